"""layers.DepthwiseConv2D / SeparableConv2D -> grouped nn.Conv2d (groups=in_channels), needing --input-shape.

PyTorch has no lazy grouped conv whose groups follow the input, so without the channel count the layer is marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src
from rules.keras_to_torch.conv import conv_args, conv_padding

_DW = ["kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate", "activation",
       "use_bias"]
_SEP = ["filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "depth_multiplier",
        "activation", "use_bias"]


class DepthwiseRule(KerasCallRule):
    id = "depthwise"
    description = ("layers.DepthwiseConv2D -> nn.Conv2d(C, C*m, k, groups=C); layers.SeparableConv2D -> "
                   "nn.Sequential(depthwise conv, 1x1 conv); both need --input-shape for C")
    TARGETS = {"keras.layers.DepthwiseConv2D": "depthwise", "keras.layers.SeparableConv2D": "separable"}
    EXAMPLES = (
        Example(keras_src(('self.dw = layers.DepthwiseConv2D(3, padding="same")',)),
                keras_src(("# crossport: TODO(depthwise): DepthwiseConv2D needs the input channel count; pass "
                           "--input-shape",
                           'self.dw = layers.DepthwiseConv2D(3, padding="same")'))),
    )

    def _parts(self, a: dict[str, cst.BaseExpression], what: str):  # type: ignore[no-untyped-def]
        channels = self.in_size()
        if channels is None:
            self.todo(f"{what} needs the input channel count; pass --input-shape")
            return None
        plan = conv_padding(self, a, 2)
        if plan is None:
            return None
        mult = literal(a.get("depth_multiplier"), None) if "depth_multiplier" in a else 1
        if not isinstance(mult, int):
            self.todo("non-literal depth_multiplier")
            return None
        return channels, mult, plan

    def _depthwise(self, a: dict[str, cst.BaseExpression], channels: int, mult: int, padding: list[cst.Arg],
                   bias: cst.BaseExpression | None) -> cst.Call:
        args = [arg(channels), arg(channels * mult), arg(a["kernel_size"]), *conv_args(a), *padding]
        if "dilation_rate" in a and literal(a["dilation_rate"], None) != 1:
            args.append(arg(a["dilation_rate"], "dilation"))
        args.append(arg(channels, "groups"))
        if bias is not None and literal(bias, None) is not True:
            args.append(arg(bias, "bias"))
        return call("nn.Conv2d", *args)

    def depthwise(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, _DW)
        parts = self._parts(a, "DepthwiseConv2D")
        if parts is None:
            return None
        channels, mult, (padding, pad_module) = parts
        layer: cst.BaseExpression = self._depthwise(a, channels, mult, padding, a.get("use_bias"))
        if pad_module is not None:
            layer = call("nn.Sequential", arg(pad_module), arg(layer))
        return self.activation(layer, a.get("activation"))

    def separable(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, _SEP)
        parts = self._parts(a, "SeparableConv2D")
        if parts is None:
            return None
        channels, mult, (padding, pad_module) = parts
        depthwise = self._depthwise(a, channels, mult, padding, cst.Name("False"))
        point_args = [arg(channels * mult), arg(a["filters"]), arg(1)]
        if "use_bias" in a and literal(a["use_bias"], None) is not True:
            point_args.append(arg(a["use_bias"], "bias"))
        modules = [m for m in (pad_module, depthwise, call("nn.Conv2d", *point_args)) if m is not None]
        return self.activation(call("nn.Sequential", *[arg(m) for m in modules]), a.get("activation"))
