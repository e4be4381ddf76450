"""The fast traversals (``rules.cst_walk.walk``, ``converter.rewrite.traverse.transform``) behave like libcst's."""
from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from converter.rewrite.traverse import transform
from rules.cst_walk import names_in, skippable, walk

FIXTURES = sorted(Path(__file__).resolve().parents[2].joinpath("fixtures", "sources").rglob("*.py"))


class _Events(cst.CSTVisitor):
    """Records every hook call (kind, node type, node identity)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def on_visit(self, node: cst.CSTNode) -> bool:  # only for libcst's visit: walk calls visit_<Type>
        self.events.append(("visit", type(node).__name__, id(node)))
        return True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.events.append(("leave", type(original_node).__name__, id(original_node)))


def _typed_events_class() -> type:
    """A visitor with a real ``visit_<Type>``/``leave_<Type>`` hook for every libcst node class."""
    def hooks(kind: str, node_type: str):  # type: ignore[no-untyped-def]
        return lambda self, node: self.events.append((kind, node_type, id(node)))

    names = [n for n, v in vars(cst).items() if isinstance(v, type) and issubclass(v, cst.CSTNode)]
    body: dict[str, object] = {}
    for n in names:
        body["visit_" + n] = hooks("visit", n)
        body["leave_" + n] = hooks("leave", n)
    return type("_TypedEvents", (cst.CSTVisitor,), body)


_TypedEvents = _typed_events_class()


class _Upper(cst.CSTTransformer):
    """Renames every Name and drops ``pass`` statements (exercises rebuilding and removal)."""

    def __init__(self) -> None:
        super().__init__()
        self.left: list[str] = []

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        self.left.append(original_node.value)
        return updated_node.with_changes(value=updated_node.value.upper())

    def leave_Pass(self, original_node: cst.Pass, updated_node: cst.Pass):  # type: ignore[no-untyped-def]
        return cst.RemoveFromParent()


@pytest.mark.parametrize("path", FIXTURES[:6], ids=lambda p: p.name)
def test_walk_calls_the_hooks_libcst_calls_in_the_same_order(path: Path) -> None:
    module = cst.parse_module(path.read_text())
    expected = _Events()
    module.visit(expected)
    got = _TypedEvents()
    got.events = []  # type: ignore[attr-defined]
    walk(module, got)
    assert got.events == expected.events  # type: ignore[attr-defined]


def test_trivial_subtrees_are_skipped_only_when_no_hook_is_about_them() -> None:
    assert skippable({cst.Comment}) == frozenset()
    assert cst.Name not in skippable({cst.Name}) and cst.Comma in skippable({cst.Name})


@pytest.mark.parametrize("path", FIXTURES[:6], ids=lambda p: p.name)
def test_transform_matches_libcst_visit(path: Path) -> None:
    source = path.read_text() + "\ndef _f():\n    pass\n    return 1\n"
    module = cst.parse_module(source)
    expected, got = _Upper(), _Upper()
    want = module.visit(expected)
    result = transform(module, got)
    assert isinstance(result, cst.Module)
    assert result.code == want.code
    assert got.left == expected.left


def test_transform_keeps_unchanged_subtrees_and_names_in_sees_every_name() -> None:
    module = cst.parse_module("x = f(a.b, [c])  # note\n")

    class _Nothing(cst.CSTTransformer):
        pass

    assert transform(module, _Nothing()) is module
    assert names_in(module, set()) == {"x", "f", "a", "b", "c"}
