"""self.layers / self.weights / self.name ... -> self.layers_ ...: Keras owns these attribute names."""
from __future__ import annotations

import libcst as cst

from rules.keras_names import KERAS_RESERVED, keras_attribute
from rules.base import Example, Rule, model_src


class ReservedAttributesRule(Rule):
    id = "reserved-attributes"
    description = ("attributes a torch model assigns but a Keras Model owns (layers, weights, name, input, output, "
                   "dtype, ...) are renamed with a trailing underscore in that class; weight transfer follows")
    EXAMPLES = (
        Example(model_src(("self.layers = nn.ModuleList([])",), ("for layer in self.layers:", "    x = layer(x)",
                                                                  "return x")),
                model_src(("self.layers_ = nn.ModuleList([])",), ("for layer in self.layers_:", "    x = layer(x)",
                                                                  "return x"))),
        Example(model_src(("self.blocks = nn.ModuleList([])",), ("return self.name",))),
    )

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        info = self.ctx.current_class()
        if info is None or not (isinstance(original_node.value, cst.Name) and original_node.value.value == "self"):
            return updated_node
        name = original_node.attr.value
        if name in KERAS_RESERVED and name in info.assigned_attrs:
            return updated_node.with_changes(attr=cst.Name(keras_attribute(name)))
        return updated_node
