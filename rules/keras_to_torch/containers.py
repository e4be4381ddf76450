"""A list attribute of layers (``self.blocks = [Block() for _ in range(3)]``, or ``self.blocks = []`` filled with
``append``) -> ``nn.ModuleList``: torch registers only modules it is told about (a plain list's layers would be
missing from state_dict, .eval() and .to())."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import arg, call, self_attr
from rules.keras_to_torch._base import keras_src


class ContainersRule(Rule):
    id = "containers"
    description = "self.x = [layers...] / [] filled with self.x.append(layer) -> nn.ModuleList (registered children)"
    EXAMPLES = (
        Example(keras_src(("self.blocks = [layers.Dense(4) for _ in range(2)]",)),
                keras_src(("self.blocks = nn.ModuleList([layers.Dense(4) for _ in range(2)])",), torch=True)),
        Example(keras_src(("self.blocks = []", "for _ in range(2):", "    self.blocks.append(layers.Dense(4))")),
                keras_src(("self.blocks = nn.ModuleList()", "for _ in range(2):", "    self.blocks.append(layers.Dense(4))"),
                          torch=True)),
        Example(keras_src(("self.sizes = [4, 8]",))),
    )

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        info = self.ctx.current_class()
        attr = self_attr(original_node.targets[0].target)
        if info is None or attr is None or info.rnn_attrs.get(attr) != "list":
            return updated_node
        value = updated_node.value
        if not isinstance(value, (cst.List, cst.ListComp)):
            return updated_node
        self.ctx.add_import("torch.nn", "nn")
        wrapped = call("nn.ModuleList") if isinstance(value, cst.List) and not value.elements else call(
            "nn.ModuleList", arg(value))
        return updated_node.with_changes(value=wrapped)
