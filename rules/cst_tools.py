"""Small, pure helpers rules use to read call arguments and build Keras code."""
from __future__ import annotations

import ast
import functools
from typing import Any, Sequence

import libcst as cst

_MODULE = cst.Module(body=[])
_UNSET = object()
#: Nodes whose ``value`` is their whole source text when they carry no parentheses.
_TOKENS = frozenset({cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.Name})


class Unbindable(Exception):
    """The call uses ``*args``/``**kwargs`` or too many positionals: arguments cannot be named statically."""


def code(node: cst.CSTNode) -> str:
    if type(node) in _TOKENS and not node.lpar:  # type: ignore[attr-defined]
        return node.value  # type: ignore[attr-defined]  # a bare token is its own source
    return _MODULE.code_for_node(node)


def bind_args(call: cst.Call, params: Sequence[str]) -> dict[str, cst.BaseExpression]:
    """Name every argument of ``call`` after the (torch) signature ``params``."""
    bound: dict[str, cst.BaseExpression] = {}
    positional = 0
    for arg in call.args:
        if arg.star:
            raise Unbindable("star-args")
        if arg.keyword is None:
            if positional >= len(params):
                raise Unbindable("too many positional arguments")
            bound[params[positional]] = arg.value
            positional += 1
        else:
            name = arg.keyword.value
            if name not in params:
                raise Unbindable(f"unknown argument {name!r}")
            bound[name] = arg.value
    return bound


def literal(node: cst.BaseExpression | None, default: Any = _UNSET) -> Any:
    """The Python value of a literal expression (numbers, strings, bools, None, tuples); else ``default``."""
    if node is None:
        return None if default is _UNSET else default
    try:
        return ast.literal_eval(code(node))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        if default is _UNSET:
            return _UNSET
        return default


def is_unknown(value: Any) -> bool:
    return value is _UNSET


@functools.lru_cache(maxsize=4096)
def expr(source: str) -> cst.BaseExpression:
    """Parse once: libcst nodes are immutable, so one parsed ``keras.layers.Dense`` can appear many times."""
    return cst.parse_expression(source)


def lit(value: Any) -> cst.BaseExpression:
    """A literal expression for ``value``; strings in double quotes."""
    if isinstance(value, str):
        return cst.SimpleString('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    if type(value) is int and value >= 0:
        return cst.Integer(repr(value))  # what parsing repr(value) gives, without the parser
    if value is None or type(value) is bool:
        return cst.Name(repr(value))
    return expr(repr(value))


def arg(value: cst.BaseExpression | Any, keyword: str | None = None) -> cst.Arg:
    node = value if isinstance(value, cst.CSTNode) else lit(value)
    if keyword is None:
        return cst.Arg(value=node)
    return cst.Arg(
        value=node,
        keyword=cst.Name(keyword),
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )


def call(func: str, *args: cst.Arg) -> cst.Call:
    """``func(args...)`` with libcst's default comma spacing."""
    fixed: list[cst.Arg] = []
    for i, a in enumerate(args):
        if i < len(args) - 1:
            a = a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        else:
            a = a.with_changes(comma=cst.MaybeSentinel.DEFAULT)
        fixed.append(a)
    return cst.Call(func=expr(func), args=fixed)


def tuple_of(elements: Sequence[cst.BaseExpression]) -> cst.Tuple:
    items = []
    for i, e in enumerate(elements):
        if len(elements) == 1:
            items.append(cst.Element(e, comma=cst.Comma()))
        elif i < len(elements) - 1:
            items.append(cst.Element(e, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))))
        else:
            items.append(cst.Element(e))
    return cst.Tuple(items)


def list_of(elements: Sequence[cst.BaseExpression]) -> cst.List:
    items = []
    for i, e in enumerate(elements):
        if i < len(elements) - 1:
            items.append(cst.Element(e, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))))
        else:
            items.append(cst.Element(e))
    return cst.List(items)


def attr_name(node: cst.BaseExpression) -> str | None:
    """``"view"`` for ``x.view``; None for anything but an attribute access."""
    if isinstance(node, cst.Attribute):
        return node.attr.value
    return None


def self_attr(node: cst.BaseExpression) -> str | None:
    """``"fc"`` for ``self.fc``; None otherwise."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
        return node.attr.value
    return None


def pad_pair(value: Any, dims: int) -> tuple[int, ...] | None:
    """Normalise an int-or-tuple conv/pool argument to a ``dims``-tuple of ints, or None if not literal ints."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (value,) * dims
    if isinstance(value, tuple) and len(value) == dims and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None
