"""nn.Module API calls on self (modules(), parameters(), apply(), to(device), ...) have no Keras equivalent."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src

_MODULE_API = frozenset({
    "modules", "named_modules", "children", "named_children", "parameters", "named_parameters", "buffers",
    "named_buffers", "apply", "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "cuda", "cpu", "to", "half", "float", "double", "eval", "train", "zero_grad", "state_dict", "load_state_dict",
    "get_submodule", "requires_grad_",
})


class ModuleApiRule(Rule):
    id = "module-api"
    description = ("self.modules()/parameters()/apply()/to()/add_module()/... (nn.Module API) in model code is marked: "
                   "Keras layers have no such methods (weight-init loops are moot once weights are transferred)")
    EXAMPLES = (
        Example(model_src(("for m in self.modules():", "    pass")),
                model_src(("# crossport: TODO(module-api): self.modules() is nn.Module API with no Keras equivalent",
                           "for m in self.modules():", "    pass"))),
    )

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        """``self.fc.weight`` in forward code: Keras names (kernel) and layouts (transposed) differ."""
        value = original_node.value
        if (
            self.ctx.in_tensor_code()
            and original_node.attr.value in ("weight", "bias")
            and isinstance(value, cst.Attribute)
            and isinstance(value.value, cst.Name)
            and value.value.value == "self"
        ):
            self.todo(f"{value.attr.value}.{original_node.attr.value}: Keras layers name (kernel/embeddings) and lay out "
                      "their weights differently")
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        func = original_node.func
        if (
            self.ctx.current_class() is not None
            and isinstance(func, cst.Attribute)
            and isinstance(func.value, cst.Name)
            and func.value.value == "self"
            and func.attr.value in _MODULE_API
        ):
            self.todo(f"self.{func.attr.value}() is nn.Module API with no Keras equivalent")
        return updated_node
