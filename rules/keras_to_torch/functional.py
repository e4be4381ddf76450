"""A functional-API builder (``inputs = keras.Input(...)`` ... ``return keras.Model(inputs, outputs)``) -> an
``nn.Module`` whose ``forward`` replays the graph with the user's own variable names, plus the original function
as a factory returning it (callers keep working).

Each applied layer becomes ``self.<keras layer name>`` (``name=`` or Keras' automatic ``conv2d_1``), so the weights
of the Keras model — also a trained ``.keras`` file — map by layer name.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import code, expr
from rules.cst_walk import walk

_BEFORE = """import keras
from keras import layers


def build_mlp(units=8):
    inputs = keras.Input(shape=(4,))
    x = layers.Dense(units, name="hidden")(inputs)
    outputs = layers.Dense(2)(x)
    return keras.Model(inputs, outputs)
"""
_AFTER = """import keras
from keras import layers
import torch.nn as nn


class Mlp(nn.Module):
    def __init__(self, units=8):
        super().__init__()
        self.hidden = layers.Dense(units, name="hidden")
        self.dense = layers.Dense(2)

    def forward(self, inputs):
        x = self.hidden(inputs)
        outputs = self.dense(x)
        return outputs


def build_mlp(units=8):
    return Mlp(units=units)
"""


class FunctionalRule(Rule):
    id = "functional"
    description = ("functional-API builder function -> nn.Module class (layers in __init__ named like the Keras "
                   "layers, forward replays the graph) + the function as a factory")
    order = 45
    EXAMPLES = (Example(_BEFORE, _AFTER),)

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._hoisted: list[tuple[str, cst.BaseExpression]] = []

    def _info(self):  # type: ignore[no-untyped-def]
        name = self.ctx.current_function()
        return None if name is None else self.ctx.analysis.functional.get(name)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        info = self._info()
        if info is None or not isinstance(updated_node.func, cst.Call):
            return updated_node
        name = info.names.get(id(original_node))
        if name is None:
            return updated_node
        self._hoisted.append((name, updated_node.func))
        return updated_node.with_changes(func=expr(f"self.{name}"))

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef):  # type: ignore[no-untyped-def]
        info = self.ctx.analysis.functional.get(original_node.name.value)
        if info is None or self.ctx.current_function() != original_node.name.value:
            return updated_node
        hoisted, self._hoisted = self._hoisted, []
        inputs = list(info.inputs)
        tensors = set(inputs)
        init: list[str] = []
        forward: list[str] = []
        outputs: str | None = None
        model_var: str | None = None
        docstring = ""
        body = updated_node.body.body
        for index, (orig, stmt) in enumerate(zip(original_node.body.body, body)):
            text = _dedent(code(stmt))
            model_call = self._model_call(orig)
            if index == 0 and _is_docstring(stmt):
                docstring = text
                continue
            if self._is_input(orig):
                continue
            if model_call is not None:
                target, call_node = model_call
                ins, outs = _model_args(call_node)
                inputs = ins or inputs
                outputs = outs
                if target is None:
                    continue  # ``return keras.Model(...)``
                model_var = target
                continue
            if model_var is not None and isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Return) \
                    and isinstance(stmt.body[0].value, cst.Name) and stmt.body[0].value.value == model_var:
                continue
            words = _names(stmt)
            if words & tensors or "self" in words:
                forward.append(text)
                tensors |= _assigned(stmt)
            else:
                init.append(text)
        if outputs is None:
            self.todo("functional builder without keras.Model(inputs, outputs): cannot tell the outputs")
            return updated_node
        self.ctx.add_import("torch.nn", "nn")
        params = code(updated_node.params)
        lines = [f"class {info.class_name}(nn.Module):", f"    def __init__(self{', ' if params else ''}{params}):",
                 "        super().__init__()"]
        lines += [_indent(t, 8) for t in init]
        lines += [f"        self.{name} = {code(module)}" for name, module in hoisted]
        lines += ["", f"    def forward(self, {', '.join(inputs)}):"]
        lines += [_indent(t, 8) for t in forward]
        lines += [f"        return {outputs}", "", ""]
        lines += [f"def {original_node.name.value}({params}):"]
        if docstring:
            lines.append(_indent(docstring, 4))
        lines.append(f"    return {info.class_name}({_forward_args(updated_node.params)})")
        module = cst.parse_module("\n".join(lines) + "\n")
        first = module.body[0].with_changes(leading_lines=updated_node.leading_lines)
        return cst.FlattenSentinel([first, *module.body[1:]])

    def _is_input(self, stmt: cst.BaseStatement) -> bool:
        if not isinstance(stmt, cst.SimpleStatementLine) or not isinstance(stmt.body[0], cst.Assign):
            return False
        value = stmt.body[0].value
        return isinstance(value, cst.Call) and self.ctx.qualified_name(value.func) == "keras.Input"

    def _model_call(self, stmt: cst.BaseStatement) -> tuple[str | None, cst.Call] | None:
        if not isinstance(stmt, cst.SimpleStatementLine):
            return None
        small = stmt.body[0]
        value = small.value if isinstance(small, (cst.Return, cst.Assign)) else None
        if not isinstance(value, cst.Call) or self.ctx.qualified_name(value.func) != "keras.Model":
            return None
        if isinstance(small, cst.Assign):
            target = small.targets[0].target
            return (target.value if isinstance(target, cst.Name) else None), value
        return None, value


def _model_args(node: cst.Call) -> tuple[list[str], str | None]:
    bound: dict[str, cst.BaseExpression] = {}
    for i, a in enumerate(node.args):
        key = a.keyword.value if a.keyword is not None else ("inputs", "outputs")[i] if i < 2 else "?"
        bound[key] = a.value
    ins = bound.get("inputs")
    names: list[str] = []
    if isinstance(ins, cst.Name):
        names = [ins.value]
    elif isinstance(ins, (cst.List, cst.Tuple)):
        names = [e.value.value for e in ins.elements if isinstance(e.value, cst.Name)]
    outs = bound.get("outputs")
    if outs is None:
        return names, None
    if isinstance(outs, (cst.List, cst.Tuple)):
        return names, ", ".join(code(e.value) for e in outs.elements)
    return names, code(outs)


def _forward_args(params: cst.Parameters) -> str:
    parts = [f"{p.name.value}={p.name.value}" for p in (*params.posonly_params, *params.params)]
    if isinstance(params.star_arg, cst.Param):
        parts.insert(len(params.posonly_params) + len(params.params), f"*{params.star_arg.name.value}")
    parts += [f"{p.name.value}={p.name.value}" for p in params.kwonly_params]
    if params.star_kwarg is not None:
        parts.append(f"**{params.star_kwarg.name.value}")
    return ", ".join(parts)


class _Names(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.found.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        walk(node.value, self)
        return False


def _names(stmt: cst.CSTNode) -> set[str]:
    v = _Names()
    walk(stmt, v)
    return v.found


def _assigned(stmt: cst.BaseStatement) -> set[str]:
    found: set[str] = set()

    class _Targets(cst.CSTVisitor):
        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            found.update(_names(node.target))

        def visit_For(self, node: cst.For) -> None:
            found.update(_names(node.target))

    walk(stmt, _Targets())
    return found


def _is_docstring(stmt: cst.BaseStatement) -> bool:
    return isinstance(stmt, cst.SimpleStatementLine) and isinstance(stmt.body[0], cst.Expr) and isinstance(
        stmt.body[0].value, (cst.SimpleString, cst.ConcatenatedString))


def _dedent(text: str) -> str:
    return text.strip("\n")


def _indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line.strip() else "" for line in text.splitlines())
