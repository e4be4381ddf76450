"""layers.Conv1D/2D/3D -> nn.Conv{n}d (or nn.LazyConv{n}d) with exact padding.

Keras 'same' pads the extra pixel at the end; with stride 1 that is torch's own ``padding="same"`` (written as a
symmetric int when it is symmetric); with stride > 1 it depends on the input size: with --input-shape the exact
amounts are computed and an asymmetric case becomes ``nn.ZeroPad2d`` + conv, without it the layer is marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, lit, literal, pad_pair, tuple_of
from rules.keras_to_torch._base import KerasCallRule, keras_src, padding_value, same_padding

_PARAMS = ["filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate", "groups", "activation",
           "use_bias"]


def conv_padding(rule: KerasCallRule, a: dict[str, cst.BaseExpression], dims: int,
                 transposed: bool = False) -> tuple[list[cst.Arg], cst.BaseExpression | None] | None:
    """(padding args for the torch layer, an explicit pad module to put before it) — None when marked."""
    mode = literal(a.get("padding"), "?") if "padding" in a else "valid"
    k = pad_pair(literal(a["kernel_size"], None), dims)
    s = pad_pair(literal(a["strides"], None), dims) if "strides" in a else (1,) * dims
    d = pad_pair(literal(a["dilation_rate"], None), dims) if "dilation_rate" in a else (1,) * dims
    if mode == "valid":
        return [], None
    if mode != "same" or k is None or s is None or d is None:
        rule.todo(f"padding={mode!r} with non-literal kernel/stride has no exact torch equivalent")
        return None
    if transposed:
        totals = [ki - si for ki, si in zip(k, s)]
        if any(t < 0 or di != 1 for t, di in zip(totals, d)):
            rule.todo("Conv2DTranspose padding='same' with kernel < stride or dilation has no exact torch equivalent")
            return None
        if not any(t % 2 for t in totals):
            return ([arg(lit(padding_value([t // 2 for t in totals])), "padding")] if any(totals) else []), None
        # Keras keeps full[before : before + n*s] of the full transposed output, before = total // 2: torch's
        # symmetric padding cannot say that, a negative (cropping) ZeroPad after the layer can.
        crop = [v for t in reversed(totals) for v in (-(t // 2), -(t - t // 2))]
        return [], call(f"nn.ZeroPad{dims}d", arg(tuple_of([lit(v) for v in crop])))
    shape = rule.input_shape()
    sizes = list(shape[1:1 + dims]) if shape and len(shape) == dims + 2 else [None] * dims
    pads = [same_padding(n, ki, si, di) for n, ki, si, di in zip(sizes, k, s, d)]
    if any(p is None for p in pads):
        # A runnable stand-in: symmetric padding d*(k-1)//2, which is Keras' 'same' exactly when the input size
        # makes the total padding even (e.g. odd sizes for k=3, s=2); marked so that --input-shape settles it.
        rule.todo("padding='same' with stride > 1 pads by the input size; symmetric padding assumed (exact only for "
                  "some input sizes): pass --input-shape to compute it exactly")
        pads = [(di * (ki - 1) // 2, di * (ki - 1) // 2) for ki, di in zip(k, d)]
    if all(before == after for before, after in pads):  # type: ignore[misc]
        values = [before for before, _ in pads]  # type: ignore[misc]
        return ([arg(lit(padding_value(values)), "padding")] if any(values) else []), None
    if all(si == 1 for si in s):
        return [arg("same", "padding")], None
    flat = [v for before_after in reversed(pads) for v in before_after]  # type: ignore[union-attr]
    return [], call(f"nn.ZeroPad{dims}d", arg(tuple_of([lit(v) for v in flat])))


def conv_args(a: dict[str, cst.BaseExpression]) -> list[cst.Arg]:
    out = []
    if "strides" in a and literal(a["strides"], None) not in (1, (1, 1), (1,)):
        out.append(arg(a["strides"], "stride"))
    return out


class ConvRule(KerasCallRule):
    id = "conv"
    description = ("layers.Conv1D/2D/3D -> nn.Conv{n}d(in, filters, k) with --input-shape, else nn.LazyConv{n}d; "
                   "'same' becomes exact explicit padding (nn.ZeroPad2d when asymmetric)")
    TARGETS = {f"keras.layers.Conv{n}D": "conv" for n in (1, 2, 3)}
    EXAMPLES = (
        Example(keras_src(('self.conv = layers.Conv2D(32, 3, activation="relu")',)),
                keras_src(("self.conv = nn.Sequential(nn.LazyConv2d(32, 3), nn.ReLU())",), torch=True)),
        Example(keras_src(('self.conv = layers.Conv2D(8, (3, 3), padding="same", use_bias=False)',)),
                keras_src(("self.conv = nn.LazyConv2d(8, (3, 3), padding=1, bias=False)",), torch=True)),
        Example(keras_src(('self.conv = layers.Conv2D(8, 4, padding="same")',)),
                keras_src(('self.conv = nn.LazyConv2d(8, 4, padding="same")',), torch=True)),
        Example(keras_src(('self.conv = layers.Conv2D(8, 3, strides=2, padding="same")',)),
                keras_src(("# crossport: TODO(conv): padding='same' with stride > 1 pads by the input size; symmetric "
                           "padding assumed (exact only for some input sizes): pass --input-shape to compute it exactly",
                           "self.conv = nn.LazyConv2d(8, 3, stride=2, padding=1)"), torch=True)),
        Example(keras_src(('self.conv = layers.Conv1D(4, 5, dilation_rate=2, groups=2)',)),
                keras_src(("self.conv = nn.LazyConv1d(4, 5, dilation=2, groups=2)",), torch=True)),
    )

    def conv(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        dims = int(name[-2])
        a = self.bind(node, _PARAMS)
        if literal(a.get("data_format"), None) == "channels_first":
            self.todo("data_format='channels_first' Keras code: the rules assume channels_last sources")
            return None
        plan = conv_padding(self, a, dims)
        if plan is None:
            return None
        padding, pad_module = plan
        n_in = self.in_size()
        head = [arg(n_in), arg(a["filters"])] if n_in else [arg(a["filters"])]
        args = [*head, arg(a["kernel_size"]), *conv_args(a), *padding]
        if "dilation_rate" in a and literal(a["dilation_rate"], None) != 1:
            args.append(arg(a["dilation_rate"], "dilation"))
        if "groups" in a and literal(a["groups"], None) != 1:
            args.append(arg(a["groups"], "groups"))
        if "use_bias" in a and literal(a["use_bias"], None) is not True:
            args.append(arg(a["use_bias"], "bias"))
        layer: cst.BaseExpression = call(f"nn.Conv{dims}d" if n_in else f"nn.LazyConv{dims}d", *args)
        if pad_module is not None:
            layer = call("nn.Sequential", arg(pad_module), arg(layer))
        return self.activation(layer, a.get("activation"))
