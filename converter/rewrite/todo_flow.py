"""Which model outputs each remaining TODO can affect (``--verify`` report), by a data-flow over the rewritten code.

A TODO marks a statement. What it can reach: a statement in ``__init__`` that assigns ``self.x`` taints the
attribute ``x``; a statement in ``forward``/``call`` taints the names it assigns (or the outputs it returns); one in
another method of the class taints calls of that method; one in a module-level function or class taints that name.
The forward/call body is then followed (names read -> names assigned, loops to a fixed point) to the ``return``.
Flow-insensitive and conservative: a TODO is listed for an output when some path could carry it there. Stdlib
``ast`` only (no framework import): it runs on the rewritten text.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass

from converter.rewrite.options import Todo

_FORWARD = ("forward", "call")
#: Sentinel output index: the return value is not a literal tuple/list, every output is reached.
ALL = -1


@dataclass(frozen=True)
class TodoReach:
    """For one TODO: the outputs (``out0`` ...) whose computation it lies on; empty: it affects no output."""

    todo: Todo
    outputs: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"line {self.todo.line} TODO({self.todo.rule_id})"


def _spans(tree: ast.AST) -> list[tuple[int, int, ast.stmt]]:
    return [(n.lineno, n.end_lineno or n.lineno, n) for n in ast.walk(tree) if isinstance(n, ast.stmt)]


def _marked(spans: list[tuple[int, int, ast.stmt]], line: int) -> ast.stmt | None:
    """The statement starting at ``line`` (the outermost of those that do); None on a comment line (code the
    rewrite commented out under the TODO, which runs nowhere)."""
    best: ast.stmt | None = None
    for start, end, node in spans:
        if start == line and (best is None or end > (best.end_lineno or 0)):
            best = node
    return best


def _self_attrs(node: ast.AST, write: bool) -> set[str]:
    ctx = ast.Store if write else ast.Load
    return {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "self" and isinstance(n.ctx, ctx)}


def _names(node: ast.AST, ctx: type) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _reads(node: ast.AST) -> set[str]:
    """Local names, ``self.<attr>`` (as ``self.attr``) and module names read by an expression or statement."""
    return _names(node, ast.Load) | {f"self.{a}" for a in _self_attrs(node, write=False)}


def _simple_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every non-compound statement of a body, nested ones included (flow-insensitive)."""
    out: list[ast.stmt] = []
    for stmt in body:
        nested = [getattr(stmt, f, None) for f in ("body", "orelse", "finalbody", "handlers")]
        if any(isinstance(b, list) and b for b in nested) and not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)):
            out.append(stmt)  # its header (a for target, an if test) is a statement of its own here
            for block in nested:
                if isinstance(block, list):
                    out += _simple_statements([b for b in block if isinstance(b, ast.stmt)]
                                              + [s for h in block if isinstance(h, ast.ExceptHandler) for s in h.body])
        else:
            out.append(stmt)
    return out


def _header_reads(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return _reads(stmt.iter)
    if isinstance(stmt, (ast.If, ast.While)):
        return _reads(stmt.test)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return set().union(*(_reads(i.context_expr) for i in stmt.items))
    return _reads(stmt)


def _writes(stmt: ast.stmt) -> set[str]:
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        return _names(stmt.target, ast.Store)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        return set().union(*(_names(i.optional_vars, ast.Store) for i in stmt.items if i.optional_vars))
    if isinstance(stmt, (ast.If, ast.While)):
        return set()
    return _names(stmt, ast.Store) | {f"self.{a}" for a in _self_attrs(stmt, write=True)}


def _all_writes(stmt: ast.stmt) -> set[str]:
    """What a statement assigns, with everything assigned in its body when it is compound (a marked ``if``)."""
    return set().union(*(_writes(s) for s in _simple_statements([stmt])))


def reach(code: str, todos: tuple[Todo, ...], entry: str, n_outputs: int) -> tuple[TodoReach, ...]:
    """For each TODO in ``code``, the outputs of model ``entry`` (a class, or a builder: all outputs) it can affect."""
    outputs = tuple(f"out{i}" for i in range(n_outputs))
    if not todos:
        return ()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return tuple(TodoReach(t, outputs) for t in todos)
    spans = _spans(tree)
    cls = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == entry), None)
    top = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    result = []
    for todo in todos:
        stmt = _marked(spans, todo.line)
        if stmt is None:
            result.append(TodoReach(todo, ()))
            continue
        if cls is None:
            # A builder function or a model bound at module level: no forward to follow; conservative.
            inside = entry in top and top[entry].lineno <= todo.line <= (top[entry].end_lineno or 0)
            result.append(TodoReach(todo, outputs if inside or _feeds(tree, stmt, top, entry) else ()))
            continue
        hit = _class_reach(cls, stmt, top, n_outputs)
        result.append(TodoReach(todo, outputs if ALL in hit else tuple(o for i, o in enumerate(outputs) if i in hit)))
    return tuple(result)


def _feeds(tree: ast.Module, stmt: ast.stmt, top: dict[str, ast.stmt], entry: str) -> bool:
    """Whether a module-level definition holding ``stmt`` is used by ``entry``."""
    holder = next((name for name, node in top.items() if node.lineno <= stmt.lineno <= (node.end_lineno or 0)), None)
    return holder is not None and entry in top and holder in _names(top[entry], ast.Load)


def _methods(cls: ast.ClassDef) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}


def _class_reach(cls: ast.ClassDef, stmt: ast.stmt, top: dict[str, ast.stmt], n_outputs: int) -> set[int]:
    """Output indices of class ``cls`` that the TODO statement ``stmt`` can reach."""
    methods = _methods(cls)
    forward = next((methods[m] for m in _FORWARD if m in methods), None)
    if forward is None:
        return {ALL}
    inside = next((m for m in methods.values() if m.lineno <= stmt.lineno <= (m.end_lineno or 0)), None)
    seeds: set[str] = set()
    direct: set[int] = set()
    if inside is None:
        holder = next((n for n, d in top.items() if d.lineno <= stmt.lineno <= (d.end_lineno or 0)), None)
        if holder == cls.name:
            return {ALL}  # a class-level statement (a class attribute): conservative
        if holder is None:
            seeds |= _writes(stmt)  # a module-level assignment (a constant the model reads)
        else:
            seeds.add(holder)
        grown = True
        while grown:  # a block class used by a stage class used by the model
            grown = False
            for name, node in top.items():
                if name not in seeds and name != cls.name and _names(node, ast.Load) & seeds:
                    seeds.add(name)
                    grown = True
        init = methods.get("__init__")
        if init is not None:  # module names used while building attributes taint those attributes
            for s in _simple_statements(init.body):
                if _header_reads(s) & seeds:
                    seeds |= {w for w in _writes(s) if w.startswith("self.")}
    elif inside is forward:
        if isinstance(stmt, ast.Return):
            direct |= _return_indices(stmt, n_outputs)
        seeds |= _all_writes(stmt)
    elif inside.name == "__init__":
        seeds |= {w for w in _all_writes(stmt) if w.startswith("self.")}
    else:
        seeds.add(f"self.{inside.name}")
    if not seeds and not direct:
        return set()
    tainted = set(seeds)
    body = _simple_statements(forward.body)
    changed = True
    while changed:  # loops and reassignments: to a fixed point
        changed = False
        for s in body:
            if _header_reads(s) & tainted:
                new = _writes(s) - tainted
                if new:
                    tainted |= new
                    changed = True
    for s in body:
        if isinstance(s, ast.Return) and s.value is not None:
            direct |= _return_indices(s, n_outputs, tainted)
    return direct


def _leaves(value: ast.expr) -> list[ast.expr] | None:
    """The flat outputs of a literal (nested) tuple/list return value, in order; None when not literal."""
    if isinstance(value, (ast.Tuple, ast.List)):
        out: list[ast.expr] = []
        for e in value.elts:
            inner = _leaves(e) if isinstance(e, (ast.Tuple, ast.List)) else [e]
            if inner is None or any(isinstance(x, (ast.Starred, ast.Dict)) for x in inner):
                return None
            out += inner
        return out
    return None if isinstance(value, ast.Dict) else [value]


def _return_indices(ret: ast.Return, n_outputs: int, tainted: set[str] | None = None) -> set[int]:
    """Indices of the returned outputs that read a tainted name (every one when ``tainted`` is None: the TODO is
    the return itself). A value whose literal leaves do not match the output count (``return out, state`` with a
    tuple ``state``) is taken as a whole."""
    value = ret.value
    if value is None:
        return set()
    leaves = _leaves(value)
    if leaves is None or len(leaves) != n_outputs:
        return {ALL} if tainted is None or _reads(value) & tainted else set()
    return {i for i, e in enumerate(leaves) if tainted is None or _reads(e) & tainted}


def format_reach(reaches: tuple[TodoReach, ...], n_outputs: int) -> list[str]:
    """Report lines: per output the TODOs on its path, then the TODOs that affect no output."""
    if not reaches:
        return []
    lines = ["TODOs on the path to each output (data-flow over forward/call):"]
    for i in range(n_outputs):
        name = f"out{i}"
        on = [r.label for r in reaches if name in r.outputs]
        lines.append(f"  {name}: {', '.join(on) if on else 'none'}")
    idle = [r.label for r in reaches if not r.outputs]
    if idle:
        lines.append(f"  affecting no output: {', '.join(idle)}")
    return lines
