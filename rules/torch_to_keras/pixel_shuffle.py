"""nn.PixelShuffle(r) / F.pixel_shuffle(x, r) -> the same channel-to-space rearrangement in keras.ops.

Keras' ``depth_to_space`` (TensorFlow's) orders the channel blocks differently from torch's PixelShuffle (torch
reads channel ``c*r*r + i*r + j``, TensorFlow ``(i*r + j)*C + c``), so the translation spells torch's order out:
reshape the channels to ``(C, r, r)``, move the two ``r`` axes next to H and W, reshape. As a layer it is a
``keras.layers.Lambda`` (weightless); in forward code the same expression is written inline.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import bind_args, code, expr


def shuffle_expr(x: str, r: str, layout: str) -> str:
    """torch's pixel shuffle of ``x`` by ``r`` in ``layout`` (rank-4 tensors), as keras.ops calls."""
    s = f"keras.ops.shape({x})"
    if layout == "channels_first":
        return (f"keras.ops.reshape(keras.ops.transpose(keras.ops.reshape({x}, (-1, {s}[1] // ({r} * {r}), {r}, {r}, "
                f"{s}[2], {s}[3])), (0, 1, 4, 2, 5, 3)), (-1, {s}[1] // ({r} * {r}), {s}[2] * {r}, {s}[3] * {r}))")
    return (f"keras.ops.reshape(keras.ops.transpose(keras.ops.reshape({x}, (-1, {s}[1], {s}[2], {s}[3] // ({r} * {r}), "
            f"{r}, {r})), (0, 1, 4, 2, 5, 3)), (-1, {s}[1] * {r}, {s}[2] * {r}, {s}[3] // ({r} * {r})))")


class PixelShuffleRule(CallRule):
    id = "pixel-shuffle"
    description = ("nn.PixelShuffle(r) -> keras.layers.Lambda(<torch's channel-to-space order in keras.ops>); "
                   "F.pixel_shuffle(x, r) -> the same expression inline (TensorFlow's depth_to_space orders channels "
                   "differently)")
    TARGETS = {"torch.nn.PixelShuffle": "layer", "torch.nn.functional.pixel_shuffle": "function",
               "torch.pixel_shuffle": "function"}
    EXAMPLES = (
        Example(model_src(("self.ps = nn.PixelShuffle(2)",)),
                model_src(("self.ps = keras.layers.Lambda(lambda t: " + shuffle_expr("t", "2", "channels_last") + ")",),
                          keras=True), layout="channels_last"),
    )

    def layer(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["upscale_factor"])
        return expr(f"keras.layers.Lambda(lambda t: {shuffle_expr('t', code(a['upscale_factor']), self.ctx.layout)})")

    def function(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        if not self.ctx.in_tensor_code():
            return None
        a = bind_args(node, ["input", "upscale_factor"])
        x = code(a["input"])
        if not isinstance(a["input"], cst.Name):
            x = f"({x})"
        return expr(shuffle_expr(x, code(a["upscale_factor"]), self.ctx.layout))
