"""--to torch: models built at module level become builder functions, so the rules see them.

Most Keras tutorials build the model at module level, not in a function or class::

    model = Sequential()                         inputs = keras.Input(shape=(28, 28, 1))
    model.add(Conv2D(32, 3, activation="relu"))  x = layers.Conv2D(16, 3)(inputs)
    ...                                          autoencoder = keras.Model(inputs, x)

This pre-pass wraps each such run of statements in ``def build_<name>(): ... return <name>`` and binds the name
again right after (``<name> = build_<name>()``), so the model still exists at module level under its own name and
the existing Sequential / functional rules rewrite it. Keras training calls on the model at module level
(``model.compile(...)``, ``model.fit(...)``, ``model.summary()``) cannot run on an ``nn.Module``: they are turned
into comments under a TODO, so the rewritten file imports.

Layer sites of a hoisted builder are keyed by the model's variable name (``model.0``, ``autoencoder.conv2d``), the
key ``keras_probe`` gives the module-level model object; automatic layer names are counted across hoisted models in
file order, as Keras counts them while the module is imported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from converter.rewrite.keras_analysis import canonical_keras
from converter.rewrite.names import ImportResolver
from converter.rewrite.todo import marker
from rules.cst_walk import names_in

#: Keras model methods that train, evaluate, print or save: nothing an ``nn.Module`` can run.
TRAINING_API = frozenset({"compile", "fit", "evaluate", "predict", "summary", "save", "save_weights",
                          "load_weights", "train_on_batch", "test_on_batch", "fit_generator", "export"})
RULE_ID = "keras-training"


@dataclass
class Hoisted:
    """The rewritten module and, per builder function made here, the module-level name of its model (in order)."""

    module: cst.Module
    builders: dict[str, str] = field(default_factory=dict)


def hoist_module_models(module: cst.Module) -> Hoisted:
    resolver = ImportResolver(module)

    def qname(node: cst.BaseExpression) -> str:
        found = resolver.resolve(node) if isinstance(node, (cst.Name, cst.Attribute)) else None
        return canonical_keras(found) if found else ""

    module = module.with_changes(body=[_unroll_builder(s, qname) for s in module.body])
    body = list(module.body)
    taken = {s.name.value for s in body if isinstance(s, (cst.FunctionDef, cst.ClassDef))}
    groups = _groups(body, qname)
    if not groups:
        return Hoisted(module)
    out: list[cst.BaseStatement] = []
    builders: dict[str, str] = {}
    models: set[str] = set()
    starts = {g[0]: g for g in groups}
    members = {i for g in groups for i in g[2]}
    for index, stmt in enumerate(body):
        if index in starts:
            start, var, indices = starts[index]
            name = _free_name(f"build_{var}", taken)
            taken.add(name)
            builders[name] = var
            models.add(var)
            out.extend(_builder(name, var, [body[i] for i in indices]))
            continue
        if index in members:
            continue
        out.append(stmt)
    out = _comment_training(out, models)
    return Hoisted(module.with_changes(body=out), builders)


def _simple(stmt: cst.BaseStatement) -> cst.BaseSmallStatement | None:
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def _assign(stmt: cst.BaseStatement) -> tuple[str, cst.BaseExpression] | None:
    small = _simple(stmt)
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
        return small.targets[0].target.value, small.value
    return None


def _method_on(stmt: cst.BaseStatement, var: str) -> str | None:
    small = _simple(stmt)
    if isinstance(small, cst.Expr) and isinstance(small.value, cst.Call):
        func = small.value.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == var:
            return func.attr.value
    return None


def _calls(value: cst.BaseExpression, qname, names: tuple[str, ...]) -> bool:  # type: ignore[no-untyped-def]
    return isinstance(value, cst.Call) and qname(value.func) in names


def _groups(body: list[cst.BaseStatement], qname) -> list[tuple[int, str, list[int]]]:  # type: ignore[no-untyped-def]
    """(first index, model variable, indices of the statements that build it) for each module-level model."""
    found: list[tuple[int, str, list[int]]] = []
    i = 0
    while i < len(body):
        assigned = _assign(body[i])
        if assigned and _calls(assigned[1], qname, ("keras.Sequential",)):
            var = assigned[0]
            indices = [i]
            j = i + 1
            while j < len(body) and _method_on(body[j], var) in ("add", "pop"):
                indices.append(j)
                j += 1
            found.append((i, var, indices))
            i = j
            continue
        if assigned and _calls(assigned[1], qname, ("keras.Input",)):
            indices = [i]
            j = i + 1
            model: str | None = None
            while j < len(body):
                stmt = body[j]
                if isinstance(stmt, cst.SimpleStatementLine):
                    if any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
                        break
                    indices.append(j)
                    step = _assign(stmt)
                    if step and _calls(step[1], qname, ("keras.Model",)):
                        model = step[0]
                        break
                j += 1
            if model is not None:
                found.append((i, model, indices))
                i = j + 1
                continue
        i += 1
    grouped = {i for g in found for i in g[2]}
    return [g for g in found if not _leaks(body, g, grouped)]


def _leaks(body: list[cst.BaseStatement], group: tuple[int, str, list[int]], grouped: set[int]) -> bool:
    """A name the group binds (other than the model) used by later module-level code outside any model group (a
    later model reusing the name ``x`` binds its own): leave the group as it is."""
    _, var, indices = group
    bound: set[str] = set()
    for i in indices:
        small = _simple(body[i])
        if isinstance(small, cst.Assign):
            for t in small.targets:
                bound |= names_in(t.target, set())
    bound.discard(var)
    if not bound:
        return False
    later: set[str] = set()
    for i in range(indices[-1] + 1, len(body)):
        if i not in grouped:
            names_in(body[i], later)
    return bool(bound & later)


def _free_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _builder(name: str, var: str, stmts: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """``def name(): <stmts>; return var`` then ``var = name()``; comments before the group stay above the def."""
    first = stmts[0]
    leading = list(getattr(first, "leading_lines", ()))
    blank = 0
    while blank < len(leading) and leading[blank].comment is None:
        blank += 1
    leading = [cst.EmptyLine()] * max(2 - blank, 0) + leading  # two blank lines before a top-level def
    inner = [stmts[0].with_changes(leading_lines=[]), *stmts[1:]]
    inner.append(cst.SimpleStatementLine([cst.Return(cst.Name(var))]))
    fn = cst.FunctionDef(name=cst.Name(name), params=cst.Parameters(),
                         body=cst.IndentedBlock(body=inner), leading_lines=leading)
    bind = cst.parse_statement(f"{var} = {name}()\n").with_changes(
        leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
    return [fn, bind]


def _comment_training(body: list[cst.BaseStatement], models: set[str]) -> list[cst.BaseStatement]:
    """``model.compile(...)`` / ``model.fit(...)`` / ``model.summary()`` at module level -> comments under a TODO."""
    out: list[cst.BaseStatement] = []
    pending: list[cst.EmptyLine] = []
    module = cst.Module(body=[])
    for stmt in body:
        method = next((m for v in models if (m := _method_on(stmt, v)) in TRAINING_API), None)
        if method is None and _assign(stmt) is not None:
            value = _assign(stmt)[1]  # type: ignore[index]
            if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and isinstance(
                    value.func.value, cst.Name) and value.func.value.value in models and value.func.attr.value in TRAINING_API:
                method = value.func.attr.value
        if method is not None:
            pending += list(getattr(stmt, "leading_lines", ()))
            pending.append(cst.EmptyLine(comment=cst.Comment(marker(
                RULE_ID, f"Keras training/inspection API (.{method}) does not exist on an nn.Module; "
                         "write the torch equivalent by hand"))))
            text = module.code_for_node(stmt.with_changes(leading_lines=[])).rstrip("\n")
            pending += [cst.EmptyLine(comment=cst.Comment(("# " + line).rstrip())) for line in text.splitlines()]
            continue
        if pending:
            stmt = stmt.with_changes(leading_lines=[*pending, *getattr(stmt, "leading_lines", ())])
            pending = []
        out.append(stmt)
    if pending:
        out.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=pending))
    return out


# -- literal loops in functional builders ---------------------------------------------------------------------------
def _unroll_builder(stmt: cst.BaseStatement, qname) -> cst.BaseStatement:  # type: ignore[no-untyped-def]
    """In a functional-API builder, ``for size in [256, 512]: <layers applied to x>`` creates new layers on every
    pass; the rewrite needs one module per layer, so the loop is unrolled with the loop variable substituted (the
    layers are created in the same order, so Keras' automatic names still match)."""
    if not isinstance(stmt, cst.FunctionDef) or not isinstance(stmt.body, cst.IndentedBlock):
        return stmt
    calls: set[str] = set()

    class _Calls(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            calls.add(qname(node.func))

    from rules.cst_walk import walk

    walk(stmt, _Calls())
    if not {"keras.Input", "keras.Model"} <= calls:
        return stmt
    body: list[cst.BaseStatement] = []
    changed = False
    for inner in stmt.body.body:
        unrolled = _unroll(inner)
        changed |= unrolled is not None
        body.extend(unrolled if unrolled is not None else [inner])
    return stmt.with_changes(body=stmt.body.with_changes(body=body)) if changed else stmt


def _unroll(loop: cst.BaseStatement) -> list[cst.BaseStatement] | None:
    if not isinstance(loop, cst.For) or loop.orelse is not None or loop.asynchronous is not None:
        return None
    if not isinstance(loop.iter, (cst.List, cst.Tuple)) or not isinstance(loop.body, cst.IndentedBlock):
        return None
    targets = [loop.target] if isinstance(loop.target, cst.Name) else (
        [e.value for e in loop.target.elements] if isinstance(loop.target, cst.Tuple) else [])
    if not targets or not all(isinstance(t, cst.Name) for t in targets):
        return None
    names = [t.value for t in targets]  # type: ignore[attr-defined]
    text = cst.Module(body=[]).code_for_node(loop.body)
    if any(w in text for w in ("break", "continue")) or _assigns(loop.body, set(names)):
        return None
    out: list[cst.BaseStatement] = []
    for index, element in enumerate(loop.iter.elements):
        values = [element.value] if len(names) == 1 else (
            [e.value for e in element.value.elements] if isinstance(element.value, (cst.Tuple, cst.List)) else [])
        if len(values) != len(names):
            return None
        mapping = dict(zip(names, values))
        for j, stmt in enumerate(loop.body.body):
            new = stmt.visit(_Substitute(mapping))
            if index == 0 and j == 0:
                head = cst.EmptyLine(comment=cst.Comment(
                    f"# unrolled: {cst.Module(body=[]).code_for_node(loop.target)} in "
                    f"{cst.Module(body=[]).code_for_node(loop.iter)}"))
                new = new.with_changes(leading_lines=[*loop.leading_lines, head, *new.leading_lines])
            out.append(new)  # type: ignore[arg-type]
    return out


def _assigns(block: cst.CSTNode, names: set[str]) -> bool:
    found = False

    class _Targets(cst.CSTVisitor):
        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            nonlocal found
            found = found or bool(names_in(node.target, set()) & names)

    from rules.cst_walk import walk

    walk(block, _Targets())
    return found


class _Substitute(cst.CSTTransformer):
    def __init__(self, mapping: dict[str, cst.BaseExpression]) -> None:
        super().__init__()
        self.mapping = mapping

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)  # only the value side can reference the loop variable
        return True

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        return updated_node.with_changes(attr=original_node.attr)

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        return updated_node.with_changes(keyword=original_node.keyword)  # ``size=size``: the keyword stays

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        value = self.mapping.get(original_node.value)
        return value if value is not None else updated_node
