"""nn.AdaptiveAvgPool2d(1) / AdaptiveMaxPool2d(1) -> keras.layers.Global{Average,Max}Pooling2D(keepdims=True)."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, literal


class AdaptivePoolRule(CallRule):
    id = "adaptive-pool"
    description = ("nn.AdaptiveAvgPool1d/2d(1), nn.AdaptiveMaxPool2d(1) -> keras.layers.Global*Pooling(keepdims=True); "
                   "other output sizes are marked")
    TARGETS = {
        "torch.nn.AdaptiveAvgPool2d": "pool", "torch.nn.AdaptiveAvgPool1d": "pool", "torch.nn.AdaptiveMaxPool2d": "pool",
    }
    EXAMPLES = (
        Example(model_src(("self.gap = nn.AdaptiveAvgPool2d((1, 1))",)),
                model_src(('self.gap = keras.layers.GlobalAveragePooling2D(keepdims=True, data_format="channels_first")',),
                          keras=True)),
        Example(model_src(("self.gap = nn.AdaptiveAvgPool2d(7)",)),
                model_src(("# crossport: TODO(adaptive-pool): only output_size=1 is translated",
                           "self.gap = nn.AdaptiveAvgPool2d(7)"))),
    )

    def pool(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["output_size", "return_indices"])
        size = literal(a["output_size"], None)
        if size != 1 and not (isinstance(size, tuple) and set(size) == {1}):
            self.todo("only output_size=1 is translated")
            return None
        kind = "Max" if "Max" in name else "Average"
        dims = int(name[-2])
        return call(f"keras.layers.Global{kind}Pooling{dims}D", arg(True, "keepdims"), *self.data_format())
