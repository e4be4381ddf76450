"""layers.Dropout / SpatialDropout1D/2D -> nn.Dropout / nn.Dropout1d/2d (identity in eval mode on both sides)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src


class DropoutRule(KerasCallRule):
    id = "dropout"
    description = "layers.Dropout(rate) -> nn.Dropout(rate); SpatialDropout1D/2D -> nn.Dropout1d/2d (channel dropout)"
    TARGETS = {"keras.layers.Dropout": "dropout", "keras.layers.SpatialDropout2D": "dropout",
               "keras.layers.SpatialDropout1D": "dropout"}
    EXAMPLES = (
        Example(keras_src(("self.drop = layers.Dropout(0.25)",)), keras_src(("self.drop = nn.Dropout(0.25)",), torch=True)),
        Example(keras_src(("self.drop = layers.SpatialDropout2D(rate=0.1)",)),
                keras_src(("self.drop = nn.Dropout2d(0.1)",), torch=True)),
        Example(keras_src(("self.drop = layers.Dropout(0.5, noise_shape=(None, 1, 8))",)),
                keras_src(("# crossport: TODO(dropout): noise_shape has no torch equivalent",
                           "self.drop = layers.Dropout(0.5, noise_shape=(None, 1, 8))"))),
    )

    def dropout(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["rate", "noise_shape", "data_format"])
        if literal(a.get("noise_shape"), None) is not None:
            self.todo("noise_shape has no torch equivalent")
            return None
        short = name.rsplit(".", 1)[-1]
        module = {"Dropout": "nn.Dropout", "SpatialDropout2D": "nn.Dropout2d", "SpatialDropout1D": "nn.Dropout1d"}[short]
        return call(module, arg(a["rate"]))
