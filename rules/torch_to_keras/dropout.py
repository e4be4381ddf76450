"""nn.Dropout(p) -> keras.layers.Dropout(rate=p); nn.Dropout1d/2d -> SpatialDropout1D/2D (identity in eval)."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit


class DropoutRule(CallRule):
    id = "dropout"
    description = "nn.Dropout(p=0.5) -> keras.layers.Dropout(rate=p) (rate is required in Keras); Dropout2d -> SpatialDropout2D"
    TARGETS = {"torch.nn.Dropout": "drop", "torch.nn.Dropout1d": "spatial", "torch.nn.Dropout2d": "spatial"}
    EXAMPLES = (
        Example(model_src(("self.drop = nn.Dropout()",)),
                model_src(("self.drop = keras.layers.Dropout(rate=0.5)",), keras=True)),
        Example(model_src(("self.drop = nn.Dropout(0.1, inplace=True)",)),
                model_src(("self.drop = keras.layers.Dropout(rate=0.1)",), keras=True)),
    )

    def drop(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["p", "inplace"])
        return call("keras.layers.Dropout", arg(a.get("p", lit(0.5)), "rate"))

    def spatial(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["p", "inplace"])
        dims = int(name[-2])
        return call(f"keras.layers.SpatialDropout{dims}D", arg(a.get("p", lit(0.5)), "rate"), *self.data_format())
