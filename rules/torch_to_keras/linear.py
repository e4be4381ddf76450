"""nn.Linear / nn.LazyLinear -> keras.layers.Dense (Keras infers the input size, like LazyLinear)."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, literal



class LinearRule(CallRule):
    id = "linear"
    description = "nn.Linear(in, out, bias) and nn.LazyLinear(out) -> keras.layers.Dense(out, use_bias=...)"
    TARGETS = {"torch.nn.Linear": "linear", "torch.nn.LazyLinear": "lazy"}
    EXAMPLES = (
        Example(model_src(("self.fc = nn.Linear(128, 10)",)), model_src(("self.fc = keras.layers.Dense(10)",), keras=True)),
        Example(model_src(("self.fc = nn.Linear(4, 2, bias=False)",)),
                model_src(("self.fc = keras.layers.Dense(2, use_bias=False)",), keras=True)),
        Example(model_src(("self.fc = nn.LazyLinear(out_features=3)",)),
                model_src(("self.fc = keras.layers.Dense(3)",), keras=True)),
        Example("import torch.nn as nn\nlayer = nn.Linear(4, 2)\n"),  # not inside a model: left alone
    )

    def _dense(self, units: cst.BaseExpression, bias: cst.BaseExpression | None) -> cst.Call:
        args = [arg(units)]
        if bias is not None and literal(bias, None) is not True:
            args.append(arg(bias, "use_bias"))
        return call("keras.layers.Dense", *args)

    def linear(self, node: cst.Call, name: str) -> cst.Call:
        a = bind_args(node, ["in_features", "out_features", "bias", "device", "dtype"])
        return self._dense(a["out_features"], a.get("bias"))

    def lazy(self, node: cst.Call, name: str) -> cst.Call:
        a = bind_args(node, ["out_features", "bias", "device", "dtype"])
        return self._dense(a["out_features"], a.get("bias"))
