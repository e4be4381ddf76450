"""torch.max/min(x, dim) and x.max/min(dim) return (values, indices): their uses become keras.ops.max/argmax.

``torch.max(x, 1)[0]`` / ``.values`` -> ``keras.ops.max(x, axis=1)``; ``[1]`` / ``.indices`` -> ``keras.ops.argmax``;
``v, i = x.max(dim=1)`` -> ``v, i = keras.ops.max(...), keras.ops.argmax(...)``. Any other use is marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import Unbindable, arg, bind_args, call, literal, tuple_of
from rules.cst_walk import walk

_INDEX = {0: "values", 1: "indices", "values": "values", "indices": "indices"}


class MaxMinDimRule(CallRule):
    id = "max-min-dim"
    description = ("torch.max/min(x, dim)[0] / .values / unpacking -> keras.ops.max/min(x, axis=dim); [1] / .indices -> "
                   "keras.ops.argmax/argmin (torch returns a (values, indices) pair, Keras two ops)")
    order = 55
    EXAMPLES = (
        Example(model_src(forward=("return torch.max(x, 2, keepdim=True)[0]",)),
                model_src(forward=("return keras.ops.max(x, axis=2, keepdims=True)",), keras=True)),
        Example(model_src(forward=("v, i = x.min(dim=1)", "return v + i")),
                model_src(forward=("v, i = keras.ops.min(x, axis=1), keras.ops.argmin(x, axis=1)", "return v + i"),
                          keras=True)),
        Example(model_src(forward=("return x.max(dim=-1).values",)),
                model_src(forward=("return keras.ops.max(x, axis=-1)",), keras=True)),
        Example(model_src(forward=("pair = x.max(dim=1)", "return pair")),
                model_src(forward=("# crossport: TODO(max-min-dim): .max(dim) returns (values, indices); use "
                                   "keras.ops.max / keras.ops.argmax", "pair = x.max(dim=1)", "return pair"))),
    )

    def _parts(self, original: cst.BaseExpression, updated: cst.BaseExpression) -> tuple[str, dict] | None:
        """(op, bound arguments) when ``original`` is a max/min call with a dim; None otherwise."""
        if not isinstance(original, cst.Call) or not isinstance(updated, cst.Call) or not self.ctx.in_tensor_code():
            return None
        func = original.func
        qname = self.ctx.qualified_name(func) if isinstance(func, (cst.Name, cst.Attribute)) else None
        try:
            if qname in ("torch.max", "torch.min"):
                a = bind_args(updated, ["input", "dim", "keepdim"])
                op = qname.split(".")[1]
            elif isinstance(func, cst.Attribute) and func.attr.value in ("max", "min") and not (qname or "").startswith(
                ("torch", "keras", "numpy")
            ) and isinstance(updated.func, cst.Attribute):
                a = {"input": updated.func.value, **bind_args(updated, ["dim", "keepdim"])}
                op = func.attr.value
            else:
                return None
        except Unbindable:
            return None
        if "dim" not in a or not isinstance(literal(a["dim"], None), int):
            return None
        return op, a

    def _build(self, op: str, a: dict, which: str) -> cst.BaseExpression | None:
        axis = self.remap_dim(a["dim"])
        if axis is None:
            self.todo("cannot tell which axis this dim is after the NCHW->NHWC change")
            return None
        name = op if which == "values" else f"arg{op}"
        args = [arg(a["input"]), arg(axis, "axis")]
        if "keepdim" in a:
            args.append(arg(a["keepdim"], "keepdims"))
        self.ctx.add_import("keras")
        return call(f"keras.ops.{name}", *args)

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        parts = self._parts(original_node.value, updated_node.value)
        if parts is None or len(original_node.slice) != 1 or not isinstance(original_node.slice[0].slice, cst.Index):
            return updated_node
        which = _INDEX.get(literal(original_node.slice[0].slice.value, None))
        if which is None:
            return updated_node
        return self._build(*parts, which) or updated_node

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        parts = self._parts(original_node.value, updated_node.value)
        which = _INDEX.get(original_node.attr.value)
        if parts is None or which is None:
            return updated_node
        return self._build(*parts, which) or updated_node

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.BaseSmallStatement:
        parts = self._parts(original_node.value, updated_node.value)
        if parts is None:
            return updated_node
        target = original_node.targets[0].target if len(original_node.targets) == 1 else None
        if not (isinstance(target, cst.Tuple) and len(target.elements) == 2):
            self.todo(f".{parts[0]}(dim) returns (values, indices); use keras.ops.{parts[0]} / keras.ops.arg{parts[0]}")
            return updated_node
        names = [e.value for e in updated_node.targets[0].target.elements]  # type: ignore[attr-defined]
        values = [(n, which) for n, which in zip(names, ("values", "indices"))
                  if not (isinstance(n, cst.Name) and n.value == "_")]
        built = [self._build(*parts, which) for _, which in values]
        if any(b is None for b in built):
            return updated_node
        if len(built) == 1:
            return updated_node.with_changes(targets=[cst.AssignTarget(values[0][0])], value=built[0])
        return updated_node.with_changes(value=tuple_of(built).with_changes(lpar=[], rpar=[]))

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        """Any max/min-with-dim call still in the statement is a (values, indices) pair used some other way."""
        if (self.ctx.in_tensor_code() and not self.ctx.statement_has_todo()
                and {"max", "min"} & self.ctx.statement_words(updated_node)):
            finder = _Pairs()
            walk(updated_node, finder)
            if finder.found:
                self.todo(f".{finder.found}(dim) returns (values, indices); use keras.ops.{finder.found} / "
                          f"keras.ops.arg{finder.found}")
        return updated_node


class _Pairs(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found = ""

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and func.attr.value in ("max", "min") and node.args:
            receiver = cst.Module(body=[]).code_for_node(func.value)
            if not receiver.startswith(("keras", "np", "numpy", "math", "torch")):
                self.found = self.found or func.attr.value
