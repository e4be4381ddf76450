"""layers.Activation / ReLU / LeakyReLU / ELU / Softmax -> torch activation modules, defaults written out."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, lit, literal
from rules.keras_to_torch._base import KerasCallRule, activation_module, keras_src


class ActivationLayersRule(KerasCallRule):
    id = "activation-layers"
    description = ("layers.Activation(name) and layers.ReLU/LeakyReLU/ELU/Softmax -> nn.ReLU/ReLU6/LeakyReLU/"
                   "ELU/Softmax(dim) ...; Keras' LeakyReLU slope 0.3 and softmax axis -1 (NCHW: dim=1) are explicit")
    TARGETS = {"keras.layers.Activation": "activation", "keras.layers.ReLU": "relu",
               "keras.layers.LeakyReLU": "leaky", "keras.layers.ELU": "elu", "keras.layers.Softmax": "softmax"}
    EXAMPLES = (
        Example(keras_src(('self.act = layers.Activation("gelu")',)), keras_src(("self.act = nn.GELU()",), torch=True)),
        Example(keras_src(("self.act = layers.LeakyReLU()",)),
                keras_src(("self.act = nn.LeakyReLU(0.3)",), torch=True)),
        Example(keras_src(("self.act = layers.ReLU(max_value=6)",)), keras_src(("self.act = nn.ReLU6()",), torch=True)),
        Example(keras_src(("self.conv = layers.Conv2D(4, 1)", "self.act = layers.Softmax()")),
                keras_src(("self.conv = layers.Conv2D(4, 1)", "self.act = nn.Softmax(dim=1)"), torch=True)),
    )

    def activation(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["activation"])
        module = activation_module(a["activation"], self.ctx.qualified_name, self.channel_dim())
        if module is None:
            return call("nn.Identity")
        if module is False:
            self.todo("activation with no known torch module")
            return None
        return module

    def relu(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["max_value", "negative_slope", "threshold"])
        top, slope = self.flag(a, "max_value", None), self.flag(a, "negative_slope", 0.0)
        if self.flag(a, "threshold", 0.0) not in (0, 0.0) or slope not in (0, 0.0) and top is not None:
            self.todo("ReLU with a threshold (or both a slope and a cap)")
            return None
        if slope not in (0, 0.0):
            return call("nn.LeakyReLU", arg(a["negative_slope"]))
        if top is None:
            return call("nn.ReLU")
        if top in (6, 6.0):
            return call("nn.ReLU6")
        return call("nn.Hardtanh", arg(0.0), arg(a["max_value"]))

    def leaky(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["negative_slope", "alpha"])
        return call("nn.LeakyReLU", arg(a.get("negative_slope", a.get("alpha", lit(0.3)))))

    def elu(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["alpha"])
        return call("nn.ELU", *([arg(a["alpha"], "alpha")] if "alpha" in a and literal(a["alpha"], None) != 1.0 else []))

    def softmax(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["axis"])
        axis = literal(a["axis"], "?") if "axis" in a else -1
        shape = self.input_shape()
        dim = self.torch_dim(axis, len(shape) if shape else None)
        if dim is None:
            self.todo(f"Softmax(axis={axis}): the matching NCHW dim needs the rank; pass --input-shape")
            return None
        return call("nn.Softmax", arg(dim, "dim"))
