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
