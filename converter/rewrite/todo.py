"""The TODO marker format, how it is attached to statements, and how it is found again in output."""
from __future__ import annotations

import re

import libcst as cst

from converter.rewrite.options import Todo

MARKER = "# crossport: TODO("
_PATTERN = re.compile(r"#\s*crossport: TODO\((?P<rule>[^)]+)\):\s*(?P<why>.*)$")


def marker(rule_id: str, why: str) -> str:
    return f"{MARKER}{rule_id}): {why}"


def attach(stmt: cst.CSTNode, messages: list[str]) -> cst.CSTNode:
    """Add each message as a comment line above ``stmt`` unless it is already there (idempotence)."""
    leading = getattr(stmt, "leading_lines", None)
    if leading is None:
        return stmt
    present = {line.comment.value for line in leading if line.comment is not None}
    new = [m for m in dict.fromkeys(messages) if m not in present]
    if not new:
        return stmt
    lines = list(leading) + [cst.EmptyLine(indent=True, comment=cst.Comment(m)) for m in new]
    return stmt.with_changes(leading_lines=lines)


def scan(code: str) -> tuple[Todo, ...]:
    """Every TODO marker in ``code``, with the line of the construct it marks (the next non-marker line)."""
    lines = code.splitlines()
    found: list[Todo] = []
    for i, text in enumerate(lines):
        match = _PATTERN.search(text.strip())
        if not match:
            continue
        target = i + 1
        while target < len(lines) and _PATTERN.search(lines[target].strip()):
            target += 1
        found.append(Todo(line=min(target, len(lines) - 1) + 1, rule_id=match["rule"], why=match["why"].strip()))
    return tuple(found)
