"""keras.layers.Dense -> nn.Linear (in_features from --input-shape facts) or nn.LazyLinear; fused activation split."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src


class DenseRule(KerasCallRule):
    id = "dense"
    description = ("layers.Dense(units, activation, use_bias) -> nn.Linear(in, units) with --input-shape, else "
                   "nn.LazyLinear(units); activation= becomes nn.Sequential(linear, activation); kernel/bias_initializer "
                   "become nn.init calls (.apply) on the fresh layer")
    TARGETS = {"keras.layers.Dense": "dense"}
    EXAMPLES = (
        Example(keras_src(("self.fc = layers.Dense(10)",)), keras_src(("self.fc = nn.LazyLinear(10)",), torch=True)),
        Example(keras_src(('self.fc = layers.Dense(64, activation="relu", use_bias=False)',)),
                keras_src(("self.fc = nn.Sequential(nn.LazyLinear(64, bias=False), nn.ReLU())",), torch=True)),
        Example(keras_src(("self.fc = layers.Dense(units=3, kernel_initializer='he_normal')",)),
                keras_src(("# crossport: TODO(dense): nn.LazyLinear has no weights before its first call, so "
                           "kernel_initializer not applied; pass --input-shape to initialize it like Keras",
                           "self.fc = nn.LazyLinear(3)"), torch=True)),
        Example("from keras import layers\nfc = layers.Dense(4)\n"),  # not in a model: left alone
    )

    def dense(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["units", "activation", "use_bias"])
        n_in = self.in_size()
        args = [arg(n_in), arg(a["units"])] if n_in else [arg(a["units"])]
        if "use_bias" in a and literal(a["use_bias"], None) is not True:
            args.append(arg(a["use_bias"], "bias"))
        return self.activation(call("nn.Linear" if n_in else "nn.LazyLinear", *args), a.get("activation"))
