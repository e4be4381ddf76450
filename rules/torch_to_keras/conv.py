"""nn.Conv1d/2d/3d (and Lazy*) -> keras.layers.Conv{1,2,3}D with exact padding.

torch pads symmetrically; Keras 'same' pads the extra pixel at the end, so 'same' is used only when it is
provably identical (stride 1 and dilation*(k-1) == 2p); otherwise an explicit ZeroPadding layer + 'valid'.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, list_of, lit, literal, pad_pair

_PARAMS = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
           "padding_mode", "device", "dtype"]


def padding_plan(padding: cst.BaseExpression | None, kernel: cst.BaseExpression, stride: cst.BaseExpression | None,
                 dilation: cst.BaseExpression | None, dims: int) -> str:
    """'valid', 'same' or 'explicit' (ZeroPadding + valid) — the exact Keras equivalent of torch padding."""
    p = literal(padding, "?") if padding is not None else 0
    if p == "?":
        return "explicit"
    if p == "valid":
        return "valid"
    if p == "same":
        return "same"
    pp = pad_pair(p, dims)
    if pp is not None and all(v == 0 for v in pp):
        return "valid"
    k = pad_pair(literal(kernel), dims)
    s = pad_pair(literal(stride, None) if stride is not None else 1, dims)
    d = pad_pair(literal(dilation, None) if dilation is not None else 1, dims)
    if pp is not None and k and s and d and all(si == 1 for si in s) and all(
        di * (ki - 1) == 2 * pi for di, ki, pi in zip(d, k, pp)
    ):
        return "same"
    return "explicit"


class ConvRule(CallRule):
    id = "conv"
    description = ("nn.Conv1d/2d/3d and nn.LazyConv1d/2d/3d -> keras.layers.Conv{1,2,3}D; symmetric padding becomes "
                   "'same' only when exact, else ZeroPadding{n}D + 'valid'")
    TARGETS = {
        **{f"torch.nn.Conv{n}d": "conv" for n in (1, 2, 3)},
        **{f"torch.nn.LazyConv{n}d": "lazy" for n in (1, 2, 3)},
    }
    EXAMPLES = (
        Example(model_src(("self.conv = nn.Conv2d(1, 8, 3, padding=1)",)),
                model_src(('self.conv = keras.layers.Conv2D(8, 3, padding="same", data_format="channels_first")',),
                          keras=True)),
        Example(model_src(("self.conv = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False)",)),
                model_src(('self.conv = keras.Sequential([keras.layers.ZeroPadding2D(1, data_format="channels_first"), '
                           'keras.layers.Conv2D(16, 3, strides=2, use_bias=False, data_format="channels_first")])',),
                          keras=True)),
        Example(model_src(("self.conv = nn.Conv1d(4, 4, 5)",)),
                model_src(("self.conv = keras.layers.Conv1D(4, 5)",), keras=True), layout="channels_last"),
        Example(model_src(("self.conv = nn.Conv2d(", "    3,  # RGB in", "    16,", "    kernel_size=5,", ")")),
                model_src(("# RGB in", "self.conv = keras.layers.Conv2D(", "    16,", "    5,",
                           '    data_format="channels_first",', ")"), keras=True)),
        Example(model_src(("self.conv = nn.LazyConv2d(6, 5)",)),
                model_src(('self.conv = keras.layers.Conv2D(6, 5, data_format="channels_first")',), keras=True)),
        Example(model_src(("self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode='reflect')",)),
                model_src(("# crossport: TODO(conv): padding_mode='reflect' has no Keras layer equivalent",
                           "self.conv = nn.Conv2d(3, 3, 3, padding=1, padding_mode='reflect')"))),
    )

    def conv(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._build(bind_args(node, _PARAMS), name)

    def lazy(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._build(bind_args(node, _PARAMS[1:]), name)

    def _build(self, a: dict[str, cst.BaseExpression], name: str) -> cst.BaseExpression | None:
        dims = int(name[-2])
        mode = literal(a.get("padding_mode"), "zeros") if "padding_mode" in a else "zeros"
        if mode != "zeros":
            self.todo(f"padding_mode={mode!r} has no Keras layer equivalent")
            return None
        stride_v, dilation_v = literal(a.get("stride"), None), literal(a.get("dilation"), None)
        if isinstance(stride_v, int) and isinstance(dilation_v, int) and stride_v > 1 and dilation_v > 1:
            # Only when both are known: otherwise Keras itself raises at construction, never silently differs.
            self.todo("Keras refuses strides > 1 together with dilation_rate > 1")
            return None
        plan = padding_plan(a.get("padding"), a["kernel_size"], a.get("stride"), a.get("dilation"), dims)
        args = [arg(a["out_channels"]), arg(a["kernel_size"])]
        if "stride" in a and literal(a["stride"], None) != 1:
            args.append(arg(a["stride"], "strides"))
        if plan == "same":
            args.append(arg("same", "padding"))
        if "dilation" in a and literal(a["dilation"], None) != 1:
            args.append(arg(a["dilation"], "dilation_rate"))
        if "groups" in a and literal(a["groups"], None) != 1:
            args.append(arg(a["groups"], "groups"))
        if "bias" in a and literal(a["bias"], None) is not True:
            args.append(arg(a["bias"], "use_bias"))
        layer = call(f"keras.layers.Conv{dims}D", *args, *self.data_format())
        if plan != "explicit":
            return layer
        padding = a["padding"]
        value = literal(padding, None)
        if isinstance(value, str):
            self.todo(f"padding={value!r} with these arguments has no exact Keras equivalent")
            return None
        if dims == 1 and isinstance(value, tuple) and len(value) == 1:
            padding = lit(value[0])  # torch (p,) == Keras ZeroPadding1D(p); a Keras 2-tuple means (left, right)
        pad = call(f"keras.layers.ZeroPadding{dims}D", arg(padding), *self.data_format())
        return call("keras.Sequential", arg(list_of([pad, layer])))
