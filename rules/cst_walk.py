"""A read-only traversal for ``cst.CSTVisitor`` subclasses that does not rebuild the tree.

``node.visit(visitor)`` in libcst reconstructs (and re-validates) every node it passes, even for a read-only
``CSTVisitor``: on a 2,000-line file the analysis and pre-check visitors spent more time there than the rewrite
itself. ``walk`` calls the same ``visit_<Type>`` / ``leave_<Type>`` hooks in the same order (children in the order
libcst visits them, i.e. lexical order) but only reads the tree. Attribute hooks (``visit_<Type>_<field>``) and
``on_visit``/``on_leave`` overrides are not supported; the visitors in this project use neither.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import libcst as cst

_Hook = Callable[[cst.CSTNode], object]


class _FieldOrder(cst.CSTVisitor):
    """Records the field names libcst's ``_visit_and_replace_children`` visits, in order, without descending."""

    def __init__(self) -> None:
        self.fields: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if attribute not in self.fields:
            self.fields.append(attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        return None


#: node class -> its child-holding field names in libcst's visiting order (learnt from the first instance seen).
_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields_of(node: cst.CSTNode) -> tuple[str, ...]:
    kind = type(node)
    found = _FIELDS.get(kind)
    if found is None:
        recorder = _FieldOrder()
        node._visit_and_replace_children(recorder)
        # Any field a conditional branch skipped for this instance still gets walked (after the recorded ones).
        rest = [f.name for f in dataclasses.fields(node) if f.name not in recorder.fields]
        found = _FIELDS[kind] = tuple(recorder.fields + rest)
    return found


def children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """The node's children in libcst's visiting order (like ``node.children``, without building a new node)."""
    for name in _fields_of(node):
        value = getattr(node, name)
        if isinstance(value, cst.CSTNode):
            yield value
        elif isinstance(value, (tuple, list)):
            for item in value:
                if isinstance(item, cst.CSTNode):
                    yield item


class _Hooks:
    """Per visitor: node class -> (visit hook, leave hook), looked up once per class."""

    def __init__(self, visitor: cst.CSTVisitor) -> None:
        self.visitor = visitor
        self.table: dict[type, tuple[_Hook | None, _Hook | None]] = {}

    def get(self, kind: type) -> tuple[_Hook | None, _Hook | None]:
        hooks = self.table.get(kind)
        if hooks is None:
            name = kind.__name__
            hooks = self.table[kind] = (_own(self.visitor, "visit_" + name), _own(self.visitor, "leave_" + name))
        return hooks


def _own(visitor: cst.CSTVisitor, attr: str) -> _Hook | None:
    """The hook if the visitor class overrides libcst's no-op default; None otherwise (skipping the call)."""
    impl = getattr(type(visitor), attr, None)
    if impl is None or impl is getattr(cst.CSTVisitor, attr, None):
        return None
    return getattr(visitor, attr)


def walk(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """Equivalent to ``node.visit(visitor)`` for a read-only visitor (hooks see the very same node objects)."""
    _walk(node, _Hooks(visitor))


def _walk(node: cst.CSTNode, hooks: _Hooks) -> None:
    visit, leave = hooks.get(type(node))
    if visit is None or visit(node) is not False:
        for name in _fields_of(node):
            value = getattr(node, name)
            if isinstance(value, cst.CSTNode):
                _walk(value, hooks)
            elif isinstance(value, (tuple, list)):
                for item in value:
                    if isinstance(item, cst.CSTNode):
                        _walk(item, hooks)
    if leave is not None:
        leave(node)
