"""nn.LayerNorm -> keras.layers.LayerNormalization with the normalized axes and epsilon written out."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal, tuple_of


class LayerNormRule(CallRule):
    id = "layernorm"
    description = ("nn.LayerNorm(shape, eps) -> keras.layers.LayerNormalization(axis=<last len(shape) axes>, "
                   "epsilon=eps); Keras' first positional argument is axis, never the shape")
    TARGETS = {"torch.nn.LayerNorm": "ln"}
    EXAMPLES = (
        Example(model_src(("self.norm = nn.LayerNorm(64)",)),
                model_src(("self.norm = keras.layers.LayerNormalization(axis=-1, epsilon=1e-05)",), keras=True)),
        Example(model_src(("self.norm = nn.LayerNorm([4, 8], eps=1e-6, elementwise_affine=False)",)),
                model_src(("self.norm = keras.layers.LayerNormalization(axis=(-2, -1), epsilon=1e-6, center=False, "
                           "scale=False)",), keras=True)),
    )

    def ln(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["normalized_shape", "eps", "elementwise_affine", "bias", "device", "dtype"])
        if self.ctx.remaps_dims():
            self.todo("LayerNorm inside a channels_last image model: the normalized axes change meaning")
            return None
        shape = a["normalized_shape"]
        n = 1
        if isinstance(shape, (cst.List, cst.Tuple)):
            n = len(shape.elements)
        axis = lit(-1) if n == 1 else tuple_of([lit(-i) for i in range(n, 0, -1)])
        args = [arg(axis, "axis"), arg(a.get("eps", lit(1e-5)), "epsilon")]
        if "elementwise_affine" in a and literal(a["elementwise_affine"], None) is not True:
            args += [arg(a["elementwise_affine"], "center"), arg(a["elementwise_affine"], "scale")]
        elif "bias" in a and literal(a["bias"], None) is not True:
            args.append(arg(a["bias"], "center"))
        return call("keras.layers.LayerNormalization", *args)
