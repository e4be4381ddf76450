"""Activation modules -> Keras layers, with every differing default written out."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal

_SIMPLE = {"SiLU": "silu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softplus": None, "Mish": "mish", "Hardswish": "hard_silu"}


class ActivationLayerRule(CallRule):
    id = "activation-layers"
    description = ("nn.ReLU/ReLU6/GELU/SiLU/Sigmoid/Tanh/LeakyReLU/ELU/Softmax/LogSoftmax -> keras.layers.*; "
                   "LeakyReLU slope, ELU alpha and softmax axis are always explicit")
    TARGETS = {
        "torch.nn.ReLU": "relu", "torch.nn.ReLU6": "relu6", "torch.nn.GELU": "gelu", "torch.nn.SiLU": "simple",
        "torch.nn.Sigmoid": "simple", "torch.nn.Tanh": "simple", "torch.nn.Mish": "simple",
        "torch.nn.Hardswish": "simple", "torch.nn.LeakyReLU": "leaky", "torch.nn.ELU": "elu",
        "torch.nn.Softmax": "softmax", "torch.nn.LogSoftmax": "log_softmax",
    }
    EXAMPLES = (
        Example(model_src(("self.act = nn.ReLU(inplace=True)",)),
                model_src(("self.act = keras.layers.ReLU()",), keras=True)),
        Example(model_src(("self.act = nn.LeakyReLU()",)),
                model_src(("self.act = keras.layers.LeakyReLU(negative_slope=0.01)",), keras=True)),
        Example(model_src(("self.act = nn.GELU()",)),
                model_src(('self.act = keras.layers.Activation("gelu")',), keras=True)),
        Example(model_src(("self.conv = nn.Conv2d(3, 8, 1)", "self.act = nn.Softmax(dim=1)")),
                model_src(("self.conv = nn.Conv2d(3, 8, 1)", "self.act = keras.layers.Softmax(axis=-1)"), keras=True),
                layout="channels_last"),
        Example(model_src(("self.act = nn.Softmax()",)),
                model_src(("# crossport: TODO(activation-layers): Softmax without dim: torch picks the axis from the "
                           "input rank",
                           "self.act = nn.Softmax()"))),
        Example(model_src(("self.act = nn.ReLU6()",)),
                model_src(("self.act = keras.layers.ReLU(max_value=6.0)",), keras=True)),
    )

    def relu(self, node: cst.Call, name: str) -> cst.BaseExpression:
        return call("keras.layers.ReLU")

    def relu6(self, node: cst.Call, name: str) -> cst.BaseExpression:
        return call("keras.layers.ReLU", arg(6.0, "max_value"))

    def simple(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        short = name.rsplit(".", 1)[-1]
        act = _SIMPLE.get(short)
        if act is None:
            self.todo(f"{short} has no exact Keras activation")
            return None
        return call("keras.layers.Activation", arg(act))

    def gelu(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["approximate"])
        approx = literal(a["approximate"], "?") if "approximate" in a else "none"
        if approx == "none":
            # keras.activations.gelu defaults to approximate=False (exact erf), unlike keras.ops.gelu.
            return call("keras.layers.Activation", arg("gelu"))
        self.todo("GELU(approximate='tanh') as a layer needs a custom activation; use keras.ops.gelu(x, approximate=True)")
        return None

    def leaky(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["negative_slope", "inplace"])
        return call("keras.layers.LeakyReLU", arg(a.get("negative_slope", lit(0.01)), "negative_slope"))

    def elu(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["alpha", "inplace"])
        return call("keras.layers.ELU", arg(a.get("alpha", lit(1.0)), "alpha"))

    def _axis(self, node: cst.Call, short: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["dim"])
        if "dim" not in a or literal(a["dim"], 0) is None:
            self.todo(f"{short} without dim: torch picks the axis from the input rank")
            return None
        axis = self.remap_dim(a["dim"])
        if axis is None:
            self.todo(f"cannot tell which axis dim={literal(a['dim'], '?')} is after the NCHW->NHWC change")
        return axis

    def softmax(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        axis = self._axis(node, "Softmax")
        return None if axis is None else call("keras.layers.Softmax", arg(axis, "axis"))

    def log_softmax(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        axis = self._axis(node, "LogSoftmax")
        if axis is None:
            return None
        if literal(axis, None) != -1:
            self.todo("LogSoftmax over an axis other than the last has no Keras layer")
            return None
        return call("keras.layers.Activation", arg("log_softmax"))
