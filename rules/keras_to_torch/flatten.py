"""layers.Flatten -> nn.Flatten(); on NCHW tensors torch flattens (C, H, W) where Keras flattened (H, W, C), so
the weight transfer permutes the rows of the next nn.Linear (found by tracing the rewritten model)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import call
from rules.keras_to_torch._base import KerasCallRule, keras_src


class FlattenRule(KerasCallRule):
    id = "flatten"
    description = "layers.Flatten() -> nn.Flatten() (the following Linear's rows are permuted by the weight transfer)"
    TARGETS = {"keras.layers.Flatten": "flatten"}
    EXAMPLES = (
        Example(keras_src(("self.flat = layers.Flatten()",)), keras_src(("self.flat = nn.Flatten()",), torch=True)),
    )

    def flatten(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        self.bind(node, ["data_format"])
        return call("nn.Flatten")
