"""nn.ConvTranspose1d/2d -> keras.layers.Conv{1,2}DTranspose; torch padding becomes exact cropping."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, list_of, literal, lit, pad_pair, tuple_of

_PARAMS = ["in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups", "bias",
           "dilation", "padding_mode", "device", "dtype"]


class ConvTransposeRule(CallRule):
    id = "conv-transpose"
    description = ("nn.ConvTranspose1d/2d -> keras.layers.Conv{1,2}DTranspose(padding='valid'); torch padding p and "
                   "output_padding op become Cropping{n}D((p, p - op)) so output sizes and values match")
    TARGETS = {"torch.nn.ConvTranspose1d": "convt", "torch.nn.ConvTranspose2d": "convt"}
    EXAMPLES = (
        Example(model_src(("self.up = nn.ConvTranspose2d(16, 8, 2, stride=2)",)),
                model_src(('self.up = keras.layers.Conv2DTranspose(8, 2, strides=2, data_format="channels_first")',),
                          keras=True)),
        Example(model_src(("self.up = nn.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1)",)),
                model_src(('self.up = keras.Sequential([keras.layers.Conv2DTranspose(4, 3, strides=2), '
                           'keras.layers.Cropping2D(((1, 0), (1, 0)))])',), keras=True), layout="channels_last"),
        Example(model_src(("self.up = nn.ConvTranspose2d(8, 8, 3, groups=2)",)),
                model_src(("# crossport: TODO(conv-transpose): Keras Conv2DTranspose has no groups argument",
                           "self.up = nn.ConvTranspose2d(8, 8, 3, groups=2)"))),
    )

    def convt(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, _PARAMS)
        dims = int(name[-2])
        if "groups" in a and literal(a["groups"], None) != 1:
            self.todo(f"Keras Conv{dims}DTranspose has no groups argument")
            return None
        if "padding_mode" in a and literal(a["padding_mode"], None) != "zeros":
            self.todo("only padding_mode='zeros' is supported for transposed convolutions")
            return None
        p = pad_pair(literal(a["padding"], None), dims) if "padding" in a else (0,) * dims
        op = pad_pair(literal(a["output_padding"], None), dims) if "output_padding" in a else (0,) * dims
        if p is None or op is None:
            self.todo("padding/output_padding must be literal ints to compute the exact cropping")
            return None
        if any(o > q for o, q in zip(op, p)):
            self.todo("output_padding larger than padding needs explicit end padding, not supported")
            return None
        args = [arg(a["out_channels"]), arg(a["kernel_size"])]
        if "stride" in a and literal(a["stride"], None) != 1:
            args.append(arg(a["stride"], "strides"))
        if "dilation" in a and literal(a["dilation"], None) != 1:
            args.append(arg(a["dilation"], "dilation_rate"))
        if "bias" in a and literal(a["bias"], None) is not True:
            args.append(arg(a["bias"], "use_bias"))
        layer = call(f"keras.layers.Conv{dims}DTranspose", *args, *self.data_format())
        if all(v == 0 for v in p):
            return layer
        crops = [tuple_of([lit(q), lit(q - o)]) for q, o in zip(p, op)]
        crop = call(f"keras.layers.Cropping{dims}D", arg(tuple_of(crops) if dims > 1 else crops[0]),
                    *self.data_format())
        return call("keras.Sequential", arg(list_of([layer, crop])))
