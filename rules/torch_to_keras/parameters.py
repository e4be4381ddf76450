"""self.w = nn.Parameter(torch.zeros(a, b)) and self.register_buffer("b", t) -> self.add_weight(...).

Transfer copies these as stored (no transpose): a custom parameter keeps its meaning in both frameworks.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_tools import arg, bind_args, call, literal, lit, tuple_of, self_attr, Unbindable, expr

_INITS = {"torch.zeros": '"zeros"', "torch.ones": '"ones"', "torch.empty": '"zeros"'}


class ParametersRule(Rule):
    id = "parameters"
    description = ("self.w = nn.Parameter(torch.zeros/ones/randn/rand/full(...)) and self.register_buffer(name, ...) "
                   "-> self.add_weight(shape=..., initializer=..., trainable=..., name=...)")
    EXAMPLES = (
        Example(model_src(("self.scale = nn.Parameter(torch.ones(1, 8))",)),
                model_src(('self.scale = self.add_weight(shape=(1, 8), initializer="ones", trainable=True, name="scale")',),
                          keras=True)),
        Example(model_src(('self.register_buffer("mask", torch.zeros(4))',)),
                model_src(('self.mask = self.add_weight(shape=(4,), initializer="zeros", trainable=False, name="mask")',),
                          keras=True)),
        Example(model_src(("self.pos = nn.Parameter(torch.randn(1, 16, 8) * 0.02)",)),
                model_src(('self.pos = self.add_weight(shape=(1, 16, 8), initializer=keras.initializers.RandomNormal('
                           'stddev=0.02), trainable=True, name="pos")',), keras=True)),
        Example(model_src(("self.w = nn.Parameter(torch.tensor([1.0, 2.0]))",)),
                model_src(("# crossport: TODO(parameters): initial value torch.tensor(...) is not a shape-based "
                           "initializer; set it after building",
                           "self.w = nn.Parameter(torch.tensor([1.0, 2.0]))"))),
    )

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.BaseSmallStatement:
        if self.ctx.current_class() is None or len(original_node.targets) != 1:
            return updated_node
        target = self_attr(original_node.targets[0].target)
        value = original_node.value
        if target is None or not isinstance(value, cst.Call):
            return updated_node
        if self.ctx.qualified_name(value.func) != "torch.nn.Parameter":
            return updated_node
        try:
            a = bind_args(value, ["data", "requires_grad"])
        except Unbindable:
            return updated_node
        trainable = literal(a.get("requires_grad"), True) if "requires_grad" in a else True
        weight = self._add_weight(a.get("data"), target, trainable is not False)
        return updated_node if weight is None else updated_node.with_changes(value=weight)

    def leave_Expr(self, original_node: cst.Expr, updated_node: cst.Expr) -> cst.BaseSmallStatement:
        value = original_node.value
        if self.ctx.current_class() is None or not isinstance(value, cst.Call):
            return updated_node
        func = value.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "register_buffer" and self_attr(func)):
            return updated_node
        try:
            a = bind_args(value, ["name", "tensor", "persistent"])
        except Unbindable:
            return updated_node
        name = literal(a.get("name"), None)
        if not isinstance(name, str):
            self.todo("register_buffer with a computed name")
            return updated_node
        weight = self._add_weight(a.get("tensor"), name, False)
        if weight is None:
            return updated_node
        target = cst.AssignTarget(cst.Attribute(cst.Name("self"), cst.Name(name)))
        return cst.Assign(targets=[target], value=weight)

    def _add_weight(self, data: cst.BaseExpression | None, name: str, trainable: bool) -> cst.Call | None:
        init_call, scale = data, None
        if isinstance(data, cst.BinaryOperation) and isinstance(data.operator, cst.Multiply):
            init_call, scale = data.left, data.right
        elif isinstance(data, cst.BinaryOperation) and isinstance(data.operator, cst.Divide):
            # torch.randn(n, m) / math.sqrt(n): a normal with stddev 1 / sqrt(n)
            init_call, scale = data.left, expr(f"1 / {cst.Module(body=[]).code_for_node(data.right)}")
        if not isinstance(init_call, cst.Call):
            self.todo("the initial value is not a torch factory call; set it after building")
            return None
        factory = self.ctx.qualified_name(init_call.func) or ""
        shape_args = [a for a in init_call.args if a.keyword is None]
        if len(shape_args) == 1 and isinstance(shape_args[0].value, (cst.Tuple, cst.List)):
            shape: cst.BaseExpression = tuple_of([e.value for e in shape_args[0].value.elements])
        else:
            shape = tuple_of([a.value for a in shape_args])
        if factory == "torch.full":
            if len(shape_args) != 2:
                self.todo("torch.full(...) with unexpected arguments")
                return None
            shape = shape_args[0].value
            init: cst.BaseExpression = call("keras.initializers.Constant", arg(shape_args[1].value))
        elif factory == "torch.randn":
            init = call("keras.initializers.RandomNormal", arg(scale if scale is not None else lit(1.0), "stddev"))
            scale = None
        elif factory == "torch.rand" and scale is None:
            init = call("keras.initializers.RandomUniform", arg(0.0, "minval"), arg(1.0, "maxval"))
        elif factory in _INITS and scale is None:
            init = expr(_INITS[factory])
        else:
            self.todo(f"initial value {factory or 'expression'}(...) is not a shape-based initializer; set it after building")
            return None
        if scale is not None:
            self.todo("a scaled initial value is only translated for torch.randn")
            return None
        if self.ctx.remaps_dims() and len(getattr(shape, "elements", ())) >= 3:
            self.todo("a rank>=3 parameter in a channels_last image model: its axes would need reordering")
            return None
        self.ctx.add_import("keras")
        return call("self.add_weight", arg(shape, "shape"), arg(init, "initializer"), arg(trainable, "trainable"),
                    arg(name, "name"))
