"""nn.Flatten() -> keras.layers.Flatten(data_format="channels_last"), i.e. a plain reshape.

Keras' Flatten(data_format="channels_first") transposes to channels-last first; a plain reshape keeps torch's
C,H,W order in channels_first mode and gives H,W,C in channels_last mode (the next Dense is row-permuted by
converter.weights).
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, literal


class FlattenRule(CallRule):
    id = "flatten"
    description = 'nn.Flatten() -> keras.layers.Flatten(data_format="channels_last") (never transposes); start_dim != 1 is marked'
    TARGETS = {"torch.nn.Flatten": "flatten"}
    EXAMPLES = (
        Example(model_src(("self.flat = nn.Flatten()",)),
                model_src(('self.flat = keras.layers.Flatten(data_format="channels_last")',), keras=True)),
        Example(model_src(("self.flat = nn.Flatten(2)",)),
                model_src(("# crossport: TODO(flatten): only Flatten(start_dim=1, end_dim=-1) maps to keras.layers.Flatten",
                           "self.flat = nn.Flatten(2)"))),
    )

    def flatten(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["start_dim", "end_dim"])
        start = literal(a["start_dim"], "?") if "start_dim" in a else 1
        end = literal(a["end_dim"], "?") if "end_dim" in a else -1
        if start != 1 or end != -1:
            self.todo("only Flatten(start_dim=1, end_dim=-1) maps to keras.layers.Flatten")
            return None
        return call("keras.layers.Flatten", arg("channels_last", "data_format"))
