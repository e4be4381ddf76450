"""Per-class node facts the traversal asks about every node, computed once per node class.

libcst node classes are ABCs, so ``isinstance(node, cst.BaseStatement)`` goes through ``ABCMeta.__instancecheck__``;
asked for each of the ~50,000 nodes of a 2,000-line file it was a measurable share of a rewrite. The answer only
depends on the node's class, so it is looked up in a dict instead.
"""
from __future__ import annotations

import libcst as cst

STATEMENT = 1
CLASS = 2
FUNCTION = 4

_KINDS: dict[type, int] = {}


def node_kind(node_type: type) -> int:
    """Bit set of STATEMENT / CLASS / FUNCTION for a libcst node class (0 for everything else)."""
    kind = _KINDS.get(node_type)
    if kind is None:
        kind = (STATEMENT if issubclass(node_type, cst.BaseStatement) else 0) | (
            CLASS if issubclass(node_type, cst.ClassDef) else 0) | (
            FUNCTION if issubclass(node_type, cst.FunctionDef) else 0)
        _KINDS[node_type] = kind
    return kind
