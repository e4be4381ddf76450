"""``seq.add_module(name, m)`` -> ``seq.add(m)`` on a Sequential that starts empty; ``self.add_module(name, m)`` ->
``setattr(self, name, m)`` (Keras tracks layers assigned as attributes)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_tools import arg, bind_args, call, code, Unbindable


class AddModuleRule(Rule):
    id = "add-module"
    description = ("x.add_module(name, m) -> x.add(m) (an empty nn.Sequential that grows this way becomes "
                   "keras.Sequential()); self.add_module(name, m) -> setattr(self, name, m)")
    order = 60
    EXAMPLES = (
        Example(model_src(("self.body = nn.Sequential()", "self.body.add_module('fc', self.fc)")),
                model_src(("self.body = keras.Sequential()", "self.body.add(self.fc)"), keras=True)),
        Example(model_src(("self.add_module('fc', self.fc)",)), model_src(("setattr(self, 'fc', self.fc)",))),
    )

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        value = original_node.value
        if not (self.ctx.in_model_scope() and len(original_node.targets) == 1 and isinstance(value, cst.Call)
                and not value.args and isinstance(value.func, (cst.Name, cst.Attribute))
                and self.ctx.qualified_name(value.func) == "torch.nn.Sequential"):
            return updated_node
        if code(original_node.targets[0].target) not in self.ctx.analysis.add_module_targets:
            return updated_node
        self.ctx.add_import("keras")
        return updated_node.with_changes(value=call("keras.Sequential"))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = updated_node.func
        if not (self.ctx.in_model_scope() and isinstance(func, cst.Attribute)
                and func.attr.value in ("add_module", "register_module")):
            return updated_node
        try:
            a = bind_args(updated_node, ["name", "module"])
        except Unbindable:
            return updated_node
        if "name" not in a or "module" not in a:
            return updated_node
        if code(func.value) == "self":
            return call("setattr", arg(cst.Name("self")), arg(a["name"]), arg(a["module"]))
        return call(f"{code(func.value)}.add", arg(a["module"]))
