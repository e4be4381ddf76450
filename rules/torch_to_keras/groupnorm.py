"""nn.GroupNorm -> keras.layers.GroupNormalization(groups, channel axis, epsilon) (Keras defaults: 32 groups, 1e-3)."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal


class GroupNormRule(CallRule):
    id = "groupnorm"
    description = "nn.GroupNorm(G, C, eps) -> keras.layers.GroupNormalization(groups=G, axis=channel, epsilon=eps)"
    TARGETS = {"torch.nn.GroupNorm": "gn"}
    EXAMPLES = (
        Example(model_src(("self.norm = nn.GroupNorm(4, 32)",)),
                model_src(("self.norm = keras.layers.GroupNormalization(groups=4, axis=1, epsilon=1e-05)",), keras=True)),
    )

    def gn(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["num_groups", "num_channels", "eps", "affine", "device", "dtype"])
        args = [arg(a["num_groups"], "groups"), arg(self.channel_axis(), "axis"), arg(a.get("eps", lit(1e-5)), "epsilon")]
        if "affine" in a and literal(a["affine"], None) is not True:
            args += [arg(a["affine"], "center"), arg(a["affine"], "scale")]
        return call("keras.layers.GroupNormalization", *args)
