"""--to keras without --layout: which top-level classes fall back to channels_first, as groups rather than a file.

A file often holds several independent models (a GAN's generator and discriminator, a classifier and its
helper blocks). When channels_last leaves NCHW-axis TODOs (view/permute/size of image tensors) in one of them,
only the classes that share tensors with it need channels_first: a class and every top-level class or function it
names (a block it builds, a ``make_layers`` helper) exchange tensors, so they form one group and get one layout.
Stdlib ``ast`` only (rewrites without --input-shape import no framework).
"""
from __future__ import annotations

import ast


def _top_defs(tree: ast.Module) -> dict[str, ast.stmt]:
    return {n.name: n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}


def groups(source: str) -> list[set[str]]:
    """Top-level class/function names, grouped by use (a def naming another joins its group)."""
    defs = _top_defs(ast.parse(source))
    parent = {name: name for name in defs}

    def find(name: str) -> str:
        while parent[name] != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for name, node in defs.items():
        used = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & defs.keys()
        for other in used - {name}:
            parent[find(other)] = find(name)
    found: dict[str, set[str]] = {}
    for name in defs:
        found.setdefault(find(name), set()).add(name)
    return list(found.values())


def enclosing_defs(code: str, lines: list[int]) -> set[str] | None:
    """The top-level class/function holding each line of ``code``; None when a line lies outside all of them."""
    spans = [(n.lineno, n.end_lineno or n.lineno, name) for name, n in _top_defs(ast.parse(code)).items()]
    out: set[str] = set()
    for line in lines:
        holder = next((name for start, end, name in spans if start <= line <= end), None)
        if holder is None:
            return None
        out.add(holder)
    return out


def channels_first_defs(source: str, code: str, todo_lines: list[int]) -> set[str] | None:
    """The top-level names to rewrite in channels_first so that the NCHW-axis TODOs at ``todo_lines`` of the
    channels_last rewrite ``code`` disappear; None when the whole file must (a TODO outside every def)."""
    flagged = enclosing_defs(code, todo_lines)
    if flagged is None:
        return None
    return set().union(*(g for g in groups(source) if g & flagged))
