"""F.max_pool/avg_pool/adaptive_avg_pool2d(x, 1)/interpolate(nearest) -> keras.ops, with exact padding."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal, pad_pair, tuple_of

_F = "torch.nn.functional."


class FunctionalPoolingRule(CallRule):
    id = "functional-pooling"
    description = ("F.max_pool1d/2d, F.avg_pool1d/2d -> keras.ops.max_pool/average_pool; F.adaptive_avg_pool2d(x, 1) "
                   "-> keras.ops.mean(keepdims=True); F.interpolate(scale_factor=int, mode='nearest') -> keras.ops.repeat")
    TARGETS = {
        f"{_F}max_pool1d": "pool", f"{_F}max_pool2d": "pool", f"{_F}avg_pool1d": "pool", f"{_F}avg_pool2d": "pool",
        f"{_F}adaptive_avg_pool2d": "adaptive", f"{_F}adaptive_max_pool2d": "adaptive",
        f"{_F}interpolate": "interpolate",
    }
    SCOPE = "tensor"
    EXAMPLES = (
        Example(model_src(forward=("return F.max_pool2d(x, 2)",)),
                model_src(forward=('return keras.ops.max_pool(x, 2, data_format="channels_first")',), keras=True)),
        Example(model_src(forward=("return F.adaptive_avg_pool2d(x, 1)",)),
                model_src(forward=("return keras.ops.mean(x, axis=(1, 2), keepdims=True)",), keras=True),
                layout="channels_last"),
        Example(model_src(forward=("return F.interpolate(x, scale_factor=2, mode='nearest')",)),
                model_src(forward=("return keras.ops.repeat(keras.ops.repeat(x, 2, axis=2), 2, axis=3)",), keras=True)),
        Example(model_src(forward=("return F.avg_pool2d(x, 3, 2, 1)",)),
                model_src(forward=("# crossport: TODO(functional-pooling): pooling with padding: use the layer form "
                                   "(nn.AvgPool2d / nn.MaxPool2d) which gets exact padding",
                                   "return F.avg_pool2d(x, 3, 2, 1)"))),
    )

    def pool(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        is_max = "max" in name
        dims = int(name[-2])
        params = (["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"] if is_max
                  else ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"])
        a = bind_args(node, params)
        for flag in ("ceil_mode", "return_indices"):
            if flag in a and literal(a[flag], True) is not False:
                self.todo(f"{flag}=True has no Keras equivalent")
                return None
        if "dilation" in a and literal(a["dilation"], None) != 1:
            self.todo("dilated pooling has no Keras equivalent")
            return None
        if "divisor_override" in a and literal(a["divisor_override"], 1) is not None:
            self.todo("divisor_override has no Keras equivalent")
            return None
        padding = pad_pair(literal(a["padding"], None), dims) if "padding" in a else (0,) * dims
        if padding is None or any(p != 0 for p in padding):
            self.todo("pooling with padding: use the layer form (nn.AvgPool2d / nn.MaxPool2d) which gets exact padding")
            return None
        args = [arg(a["input"]), arg(a["kernel_size"])]
        if "stride" in a and literal(a["stride"], 0) is not None:
            args.append(arg(a["stride"], "strides"))
        op = "max_pool" if is_max else "average_pool"
        return call(f"keras.ops.{op}", *args, *self.data_format())

    def adaptive(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "output_size", "return_indices"])
        size = literal(a["output_size"], None)
        if size != 1 and not (isinstance(size, tuple) and set(size) == {1}):
            self.todo("only output_size=1 is translated")
            return None
        axes = (2, 3) if self.ctx.layout == "channels_first" else (1, 2)
        op = "max" if "max" in name else "mean"
        return call(f"keras.ops.{op}", arg(a["input"]), arg(tuple_of([lit(v) for v in axes]), "axis"),
                    arg(True, "keepdims"))

    def interpolate(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor",
                             "antialias"])
        mode = literal(a["mode"], "?") if "mode" in a else "nearest"
        if mode != "nearest":
            self.todo(f"mode={mode!r} differs between frameworks (only nearest is exact)")
            return None
        scale = literal(a.get("scale_factor"), None)
        if "size" in a or not isinstance(scale, int) or isinstance(scale, bool):
            self.todo("only an integer literal scale_factor is translated (4-D input assumed)")
            return None
        first, second = (2, 3) if self.ctx.layout == "channels_first" else (1, 2)
        inner = call("keras.ops.repeat", arg(a["input"]), arg(lit(scale)), arg(first, "axis"))
        return call("keras.ops.repeat", arg(inner), arg(lit(scale)), arg(second, "axis"))
