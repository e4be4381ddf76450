"""A read-only traversal for ``cst.CSTVisitor`` subclasses that does not rebuild the tree.

``node.visit(visitor)`` in libcst reconstructs (and re-validates) every node it passes, even for a read-only
``CSTVisitor``: on a 2,000-line file the analysis and pre-check visitors spent more time there than the rewrite
itself. ``walk`` calls the same ``visit_<Type>`` / ``leave_<Type>`` hooks in the same order (children in the order
libcst visits them, i.e. lexical order) but only reads the tree. Attribute hooks (``visit_<Type>_<field>``) and
``on_visit``/``on_leave`` overrides are not supported; the visitors in this project use neither.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Callable

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


#: node class -> its fields in libcst's visiting order (learnt from an instance, see ``child_fields``).
_FIELDS: dict[type, tuple[str, ...]] = {}


def child_fields(node: cst.CSTNode) -> tuple[str, ...]:
    """The node's child fields in the order libcst visits them (recorded from its ``_visit_and_replace_children``).

    A few node types visit a field only when it is set (``FormattedStringExpression.format_spec``); while a
    recording skipped a node-typed field that is None, that field's place is unknown, so the recording serves
    this instance only (where the field is empty anyway). Fields libcst never visits (``Name.value``) are left out.
    """
    kind = type(node)
    found = _FIELDS.get(kind)
    if found is None:
        recorder = _FieldOrder()
        node._visit_and_replace_children(recorder)
        found = tuple(recorder.fields)
        if not any(getattr(node, f.name) is None and _may_hold_node(f.type)
                   for f in dataclasses.fields(node) if f.name not in found):
            _FIELDS[kind] = found
    return found


def _may_hold_node(annotation: object) -> bool:
    """Whether a dataclass field annotation admits a libcst node (unresolved string annotations: assume so)."""
    if isinstance(annotation, type):
        return issubclass(annotation, cst.CSTNode)
    if isinstance(annotation, str):
        return True
    return any(_may_hold_node(a) for a in typing.get_args(annotation))


class _Hooks:
    """Per visitor: node class -> (visit hook, leave hook), looked up once per class; ``skip``: see ``skippable``."""

    def __init__(self, visitor: cst.CSTVisitor) -> None:
        self.visitor = visitor
        self.table: dict[type, tuple[_Hook | None, _Hook | None]] = {}
        self.skip = _skip_for(type(visitor))

    def get(self, kind: type) -> tuple[_Hook | None, _Hook | None]:
        hooks = self.table.get(kind)
        if hooks is None:
            name = kind.__name__
            hooks = self.table[kind] = (_own(self.visitor, "visit_" + name), _own(self.visitor, "leave_" + name))
        return hooks


_SKIPS: dict[type, frozenset[type]] = {}


def _skip_for(visitor_class: type) -> frozenset[type]:
    found = _SKIPS.get(visitor_class)
    if found is None:
        hooked = {kind for kind in TRIVIAL if _overrides(visitor_class, "visit_" + kind.__name__)
                  or _overrides(visitor_class, "leave_" + kind.__name__)}
        found = _SKIPS[visitor_class] = skippable(hooked)
    return found


def _overrides(visitor_class: type, attr: str) -> bool:
    impl = getattr(visitor_class, attr, None)
    return impl is not None and impl is not getattr(cst.CSTVisitor, attr, None)


def _own(visitor: cst.CSTVisitor, attr: str) -> _Hook | None:
    """The hook if the visitor class overrides libcst's no-op default; None otherwise (skipping the call)."""
    return getattr(visitor, attr) if _overrides(type(visitor), attr) else None


def walk(node: cst.CSTNode, visitor: cst.CSTVisitor) -> None:
    """Equivalent to ``node.visit(visitor)`` for a read-only visitor (hooks see the very same node objects)."""
    _walk(node, _Hooks(visitor))


def _walk(node: cst.CSTNode, hooks: _Hooks) -> None:
    kind = type(node)
    pair = hooks.table.get(kind)
    visit, leave = pair if pair is not None else hooks.get(kind)
    if visit is None or visit(node) is not False:
        fields = _FIELDS.get(kind)
        for name in fields if fields is not None else child_fields(node):
            value = getattr(node, name)
            shape = _SHAPES.get(type(value)) or value_shape(type(value))
            if shape is NODE:
                if type(value) not in hooks.skip:
                    _walk(value, hooks)
            elif shape is SEQUENCE:
                for item in value:
                    if type(item) not in hooks.skip:
                        _walk(item, hooks)
    if leave is not None:
        leave(node)


def names_in(node: cst.CSTNode, found: set[str]) -> set[str]:
    """Adds every ``Name`` value in ``node`` (attribute names included) to ``found``; a bare walk, no hooks."""
    kind = type(node)
    if kind is cst.Name:
        found.add(node.value)  # type: ignore[attr-defined]
        return found
    fields = _FIELDS.get(kind)
    for name in fields if fields is not None else child_fields(node):
        value = getattr(node, name)
        shape = _SHAPES.get(type(value)) or value_shape(type(value))
        if shape is NODE:
            if type(value) is cst.Name or type(value) not in TRIVIAL:
                names_in(value, found)
        elif shape is SEQUENCE:
            for item in value:
                if type(item) is cst.Name or type(item) not in TRIVIAL:
                    names_in(item, found)
    return found


NODE, SEQUENCE, OTHER = "node", "sequence", "other"
#: value class -> NODE / SEQUENCE / OTHER. libcst nodes are ABCs, so ``isinstance(value, cst.CSTNode)`` runs
#: ``ABCMeta.__instancecheck__``; per field of every node walked that dominated the walk.
_SHAPES: dict[type, str] = {}


def value_shape(kind: type) -> str:
    """NODE for libcst node classes, SEQUENCE for tuple/list (a field holding several nodes), else OTHER."""
    shape = _SHAPES.get(kind)
    if shape is None:
        shape = _SHAPES[kind] = (NODE if issubclass(kind, cst.CSTNode)
                                 else SEQUENCE if issubclass(kind, (tuple, list)) else OTHER)
    return shape


#: Whitespace and the nodes that can hold nothing else (``Comma``, operators, ...) or only parentheses around a
#: token (``Name``, literals). None of them contains a statement, a call or a binding, so a traversal can step over
#: such a node, subtree and all, unless one of its hooks is about that very type (see ``skippable``).
_SPACE = frozenset({cst.SimpleWhitespace, cst.ParenthesizedWhitespace, cst.TrailingWhitespace, cst.EmptyLine,
                    cst.Newline, cst.Comment, cst.LeftParen, cst.RightParen})


def _concrete(*bases: type) -> frozenset[type]:
    found: set[type] = set()
    pending = list(bases)
    while pending:
        kind = pending.pop()
        pending.extend(kind.__subclasses__())
        if getattr(cst, kind.__name__, None) is kind and not kind.__name__.startswith("Base"):
            found.add(kind)  # (``add_slots`` leaves a slot-less twin of each class behind: not the public one)
    return frozenset(found)


_OPERATORS = _concrete(cst.BaseBinaryOp, cst.BaseBooleanOp, cst.BaseCompOp, cst.BaseUnaryOp, cst.BaseAugOp)
TRIVIAL = _SPACE | _OPERATORS | frozenset({
    cst.LeftSquareBracket, cst.RightSquareBracket, cst.LeftCurlyBrace, cst.RightCurlyBrace, cst.Comma, cst.Dot,
    cst.Colon, cst.Semicolon, cst.AssignEqual, cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString,
    cst.Ellipsis})


def skippable(hooked: set[type] | frozenset[type]) -> frozenset[type]:
    """The node types a traversal with hooks on ``hooked`` types may step over without visiting.

    Whitespace and parentheses sit inside every trivial node, so a hook on one of them disables skipping; any
    other trivial type contains only those, so a hook on it just keeps that type visited.
    """
    if hooked & _SPACE:
        return frozenset()
    return TRIVIAL - hooked
