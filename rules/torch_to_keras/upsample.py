"""nn.Upsample(scale_factor=s, mode='nearest') -> keras.layers.UpSampling2D(size=s, interpolation="nearest")."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, literal


class UpsampleRule(CallRule):
    id = "upsample"
    description = ("nn.Upsample(scale_factor=s, mode='nearest') / nn.UpsamplingNearest2d -> keras.layers.UpSampling2D"
                   "(size=s, interpolation='nearest'); bilinear/align_corners and size= are marked (4-D inputs assumed)")
    TARGETS = {"torch.nn.Upsample": "up", "torch.nn.UpsamplingNearest2d": "nearest"}
    EXAMPLES = (
        Example(model_src(("self.up = nn.Upsample(scale_factor=2, mode='nearest')",)),
                model_src(('self.up = keras.layers.UpSampling2D(size=2, interpolation="nearest", '
                           'data_format="channels_first")',), keras=True)),
        Example(model_src(("self.up = nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)",)),
                model_src(("# crossport: TODO(upsample): mode='bilinear' differs between frameworks (only nearest is exact)",
                           "self.up = nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True)"))),
    )

    def up(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"])
        mode = literal(a.get("mode"), "?") if "mode" in a else "nearest"
        if mode != "nearest":
            self.todo(f"mode={mode!r} differs between frameworks (only nearest is exact)")
            return None
        return self._build(a)

    def nearest(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._build(bind_args(node, ["size", "scale_factor"]))

    def _build(self, a: dict[str, cst.BaseExpression]) -> cst.BaseExpression | None:
        scale = literal(a.get("scale_factor"), None)
        if "size" in a or scale is None or isinstance(scale, float) and not scale.is_integer():
            self.todo("only an integer scale_factor is translated (size= needs the input size)")
            return None
        return call("keras.layers.UpSampling2D", arg(a["scale_factor"], "size"), arg("nearest", "interpolation"),
                    *self.data_format())
