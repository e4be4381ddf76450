"""layers.Conv2DTranspose -> nn.ConvTranspose2d; 'same' only where torch's symmetric crop is exact."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src
from rules.keras_to_torch.conv import conv_args, conv_padding

_PARAMS = ["filters", "kernel_size", "strides", "padding", "output_padding", "data_format", "dilation_rate",
           "activation", "use_bias"]


class ConvTransposeRule(KerasCallRule):
    id = "conv-transpose"
    description = ("layers.Conv1DTranspose/Conv2DTranspose -> nn.ConvTranspose{n}d (Lazy without --input-shape); "
                   "'same' becomes padding=(k-s)/2 when symmetric, else the layer + a cropping nn.ZeroPad{n}d (negative pads)")
    TARGETS = {"keras.layers.Conv2DTranspose": "deconv", "keras.layers.Conv1DTranspose": "deconv"}
    EXAMPLES = (
        Example(keras_src(('self.up = layers.Conv2DTranspose(16, 2, strides=2, padding="same")',)),
                keras_src(("self.up = nn.LazyConvTranspose2d(16, 2, stride=2)",), torch=True)),
        Example(keras_src(('self.up = layers.Conv2DTranspose(16, 3, strides=2, padding="same")',)),
                keras_src(("self.up = nn.Sequential(nn.LazyConvTranspose2d(16, 3, stride=2), "
                           "nn.ZeroPad2d((0, -1, 0, -1)))",), torch=True)),
    )

    def deconv(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        dims = int(name.rsplit(".", 1)[-1][4])
        a = self.bind(node, _PARAMS)
        if "output_padding" in a and literal(a["output_padding"], None) is not None:
            self.todo("output_padding: check torch's output_padding semantics by hand")
            return None
        plan = conv_padding(self, a, dims, transposed=True)
        if plan is None:
            return None
        n_in = self.in_size()
        head = [arg(n_in), arg(a["filters"])] if n_in else [arg(a["filters"])]
        args = [*head, arg(a["kernel_size"]), *conv_args(a), *plan[0]]
        if "dilation_rate" in a and literal(a["dilation_rate"], None) != 1:
            args.append(arg(a["dilation_rate"], "dilation"))
        if "use_bias" in a and literal(a["use_bias"], None) is not True:
            args.append(arg(a["use_bias"], "bias"))
        layer = call(f"nn.ConvTranspose{dims}d" if n_in else f"nn.LazyConvTranspose{dims}d", *args)
        if plan[1] is not None:  # an asymmetric 'same' crop, applied after the layer
            layer = call("nn.Sequential", arg(layer), arg(plan[1]))
        return self.activation(layer, a.get("activation"))
