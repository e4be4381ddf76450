"""The rule traversal: libcst's transformer protocol, rebuilding only the nodes whose children changed.

``tree.visit(transformer)`` in libcst reconstructs and re-validates every node of the module even when nothing
under it changed; on a 2,000-line file that was most of a rewrite, and almost all of the tree is left as is.
``transform`` calls the same ``on_visit`` / ``on_leave(original, updated)`` hooks in the same order (children in
libcst's visiting order), but when no child changed ``updated`` is the original node itself. Rules build their
result from ``updated`` and compare nothing by identity, so the output is the same.

Sentinels follow libcst's sequence rules: ``RemovalSentinel`` drops an element, ``FlattenSentinel`` splices its
nodes in, and a statement emptied by its children's removal is dropped. A sentinel for a single-node field is
refused (libcst accepts one for optional fields; no rule returns one there).
"""
from __future__ import annotations

from typing import Protocol, Sequence, Union

import libcst as cst

from rules.cst_walk import NODE, SEQUENCE, child_fields, value_shape

Result = Union[cst.CSTNode, cst.RemovalSentinel, cst.FlattenSentinel]


class Transformer(Protocol):
    def on_visit(self, node: cst.CSTNode) -> bool: ...

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> Result: ...


def transform(node: cst.CSTNode, visitor: Transformer, skip: frozenset[type] = frozenset()) -> Result:
    """``node.visit(visitor)`` without rebuilding unchanged subtrees.

    ``skip``: node types the visitor's hooks provably leave alone, subtree included (``rules.cst_walk.skippable``);
    they are not visited at all.
    """
    updated = node
    if visitor.on_visit(node):
        changes: dict[str, object] | None = None
        for name in child_fields(node):
            value = getattr(node, name)
            shape = value_shape(type(value))
            if shape is NODE:
                if type(value) in skip:
                    continue
                new = transform(value, visitor, skip)
                if new is value:
                    continue
                if not isinstance(new, cst.CSTNode):
                    raise TypeError(f"{type(node).__name__}.{name} cannot be removed or flattened")
            elif shape is SEQUENCE and value:
                new = _transform_sequence(value, visitor, skip)
                if new is None:
                    continue
            else:
                continue
            if changes is None:
                changes = {}
            changes[name] = new
        if changes:
            updated = node.with_changes(**changes)
    return visitor.on_leave(node, updated)


def _transform_sequence(values: Sequence[cst.CSTNode], visitor: Transformer,
                        skip: frozenset[type]) -> tuple[cst.CSTNode, ...] | None:
    """The transformed elements, or None when every element came back unchanged."""
    out: list[cst.CSTNode] | None = None
    for index, item in enumerate(values):
        new = item if type(item) in skip else transform(item, visitor, skip)
        if new is item:
            if out is not None:
                out.append(item)
            continue
        if out is None:
            out = list(values[:index])
        keep_empty = item._is_removable()
        if isinstance(new, cst.FlattenSentinel):
            out.extend(n for n in new if keep_empty or not n._is_removable())
        elif isinstance(new, cst.CSTNode) and (keep_empty or not new._is_removable()):
            out.append(new)
    return None if out is None else tuple(out)
