"""Which rule handlers run on a node: built once per rewrite, so the per-node cost is a dict lookup.

Handlers run in rule order (``Rule.order``, then id) for every node type. Call handlers marked
``rules.base.targeted`` only act on calls to a name in their rule's ``TARGETS``; for those the table is keyed by
the call's qualified name too, so a call to ``torch.flatten`` reaches the one rule that targets it instead of
every call rule (the unchanged-or-not result is the same: an untargeted call rule returns the call untouched).
"""
from __future__ import annotations

from typing import Callable, Sequence

import libcst as cst

from rules.base import Rule

Handler = Callable[..., cst.CSTNode]
Bound = tuple[Rule, Handler]


class HandlerTable:
    """``for_type(name)`` / ``for_call(qualified_name)``: the bound handlers to run, in rule order."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self._by_type: dict[str, list[Bound]] = {}
        #: every Call handler, with the names it targets (None: runs on every call).
        self._calls: list[tuple[Rule, Handler, frozenset[str] | None]] = []
        self._call_lists: dict[str | None, list[Bound]] = {}
        for rule in rules:
            for attr in dir(type(rule)):
                if attr.startswith("leave_"):
                    handler = getattr(rule, attr)
                    self._by_type.setdefault(attr[len("leave_"):], []).append((rule, handler))
                    if attr == "leave_Call":
                        targets = getattr(rule, "TARGETS", None)
                        marked = getattr(getattr(type(rule), attr), "targeted", False) and isinstance(targets, dict)
                        self._calls.append((rule, handler, frozenset(targets) if marked else None))

    def handled_types(self) -> set[type]:
        """The libcst node classes some handler is about."""
        return {getattr(cst, name) for name in self._by_type if isinstance(getattr(cst, name, None), type)}

    def for_type(self, type_name: str) -> Sequence[Bound]:
        return self._by_type.get(type_name, ())

    def for_call(self, name: str | None) -> Sequence[Bound]:
        """Call handlers for a call whose callee resolves to ``name`` (None: not a resolvable Name/Attribute)."""
        found = self._call_lists.get(name)
        if found is None:
            found = self._call_lists[name] = [
                (rule, handler) for rule, handler, targets in self._calls if targets is None or name in targets]
        return found
