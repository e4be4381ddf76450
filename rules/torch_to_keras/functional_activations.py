"""torch.nn.functional / torch activations -> keras.ops, with slope, approximation and axis written out."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal

_F = "torch.nn.functional."
_SIMPLE = {
    **{f"{_F}{n}": n for n in ("relu", "relu6", "silu", "sigmoid", "tanh", "softplus", "softsign", "selu", "hard_sigmoid", "mish")},
    "torch.nn.functional.relu_": "relu", "torch.nn.functional.hardswish": "hard_silu",
    "torch.relu": "relu", "torch.sigmoid": "sigmoid", "torch.tanh": "tanh", "torch.selu": "selu",
}


class FunctionalActivationRule(CallRule):
    id = "functional-activations"
    description = ("F.relu/relu6/silu/sigmoid/tanh/gelu/leaky_relu/elu/softmax/log_softmax and torch.relu/sigmoid/"
                   "tanh -> keras.ops.*; gelu gets approximate=False, leaky_relu its slope, softmax its axis")
    TARGETS = {
        **{k: "simple" for k in _SIMPLE},
        f"{_F}gelu": "gelu", f"{_F}leaky_relu": "leaky", f"{_F}elu": "elu",
        f"{_F}softmax": "softmax", "torch.softmax": "softmax", f"{_F}log_softmax": "log_softmax",
        "torch.log_softmax": "log_softmax",
    }
    SCOPE = "tensor"
    EXAMPLES = (
        Example(model_src(forward=("return F.relu(x, inplace=True)",)),
                model_src(forward=("return keras.ops.relu(x)",), keras=True)),
        Example(model_src(forward=("return F.gelu(x)",)),
                model_src(forward=("return keras.ops.gelu(x, approximate=False)",), keras=True)),
        Example(model_src(forward=("return F.leaky_relu(x)",)),
                model_src(forward=("return keras.ops.leaky_relu(x, negative_slope=0.01)",), keras=True)),
        Example(model_src(forward=("return F.log_softmax(x, dim=1)",)),
                model_src(forward=("return keras.ops.log_softmax(x, axis=1)",), keras=True)),
        Example(model_src(forward=("return torch.sigmoid(x)",)),
                model_src(forward=("return keras.ops.sigmoid(x)",), keras=True)),
    )

    def simple(self, node: cst.Call, name: str) -> cst.BaseExpression:
        return call(f"keras.ops.{_SIMPLE[name]}", arg(node.args[0].value))

    def gelu(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "approximate"])
        approx = literal(a["approximate"], "?") if "approximate" in a else "none"
        if approx not in ("none", "tanh"):
            self.todo("approximate must be a literal 'none' or 'tanh'")
            return None
        return call("keras.ops.gelu", arg(a["input"]), arg(approx == "tanh", "approximate"))

    def leaky(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["input", "negative_slope", "inplace"])
        return call("keras.ops.leaky_relu", arg(a["input"]), arg(a.get("negative_slope", lit(0.01)), "negative_slope"))

    def elu(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["input", "alpha", "inplace"])
        return call("keras.ops.elu", arg(a["input"]), arg(a.get("alpha", lit(1.0)), "alpha"))

    def _axis_call(self, node: cst.Call, op: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dim", "_stacklevel", "dtype"])
        if "dim" not in a or literal(a["dim"], 0) is None:
            self.todo(f"{op} without dim: torch picks the axis from the input rank")
            return None
        if "dtype" in a:
            self.todo(f"{op}(dtype=...) is not translated")
            return None
        axis = self.remap_dim(a["dim"])
        if axis is None:
            self.todo("cannot tell which axis this dim is after the NCHW->NHWC change")
            return None
        return call(f"keras.ops.{op}", arg(a["input"]), arg(axis, "axis"))

    def softmax(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._axis_call(node, "softmax")

    def log_softmax(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._axis_call(node, "log_softmax")
