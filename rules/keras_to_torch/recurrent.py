"""layers.LSTM / GRU / SimpleRNN (and Bidirectional) -> nn.LSTM / nn.GRU / nn.RNN(batch_first=True).

Keras returns the last step unless return_sequences=True; torch returns (output, state). The module is built here;
``recurrent_calls`` rewrites the call sites. GRU with reset_after=False (Keras 2's "v1" formulation) computes a
different function from torch's GRU and is refused with that reason.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src

_PARAMS = ["units", "activation", "recurrent_activation", "use_bias", "kernel_initializer",
           "recurrent_initializer", "bias_initializer", "unit_forget_bias", "kernel_regularizer",
           "recurrent_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
           "recurrent_constraint", "bias_constraint", "dropout", "recurrent_dropout", "seed", "return_sequences",
           "return_state", "go_backwards", "stateful", "unroll", "reset_after", "use_cudnn"]
_MODULES = {"LSTM": "nn.LSTM", "GRU": "nn.GRU", "SimpleRNN": "nn.RNN"}


class RecurrentRule(KerasCallRule):
    id = "recurrent"
    description = ("layers.LSTM/GRU/SimpleRNN(units) -> nn.LSTM/GRU/RNN(input_size, units, batch_first=True); "
                   "Bidirectional(...) -> bidirectional=True; input_size from --input-shape; GRU reset_after=False "
                   "is refused (not torch's formulation)")
    TARGETS = {"keras.layers.LSTM": "rnn", "keras.layers.GRU": "rnn", "keras.layers.SimpleRNN": "rnn",
               "keras.layers.Bidirectional": "bidirectional"}
    EXAMPLES = (
        Example(keras_src(("self.gru = layers.GRU(32, reset_after=False)",)),
                keras_src(("# crossport: TODO(recurrent): GRU(reset_after=False) applies the reset gate before the "
                           "recurrent matmul; torch's GRU (and Keras' default) after it: not the same function",
                           "self.gru = layers.GRU(32, reset_after=False)"))),
        Example(keras_src(("self.lstm = layers.LSTM(32)",)),
                keras_src(("# crossport: TODO(recurrent): LSTM needs the input feature size; pass --input-shape",
                           "self.lstm = layers.LSTM(32)"))),
    )

    def _module(self, node: cst.Call, name: str, bidirectional: bool) -> cst.BaseExpression | None:
        kind = name.rsplit(".", 1)[-1]
        a = self.bind(node, _PARAMS)
        if kind == "GRU" and self.flag(a, "reset_after", True) is not True:
            self.todo("GRU(reset_after=False) applies the reset gate before the recurrent matmul; torch's GRU (and "
                      "Keras' default) after it: not the same function")
            return None
        for key, default in (("return_state", False), ("go_backwards", False), ("stateful", False),
                             ("dropout", 0), ("recurrent_dropout", 0)):
            if self.flag(a, key, default) != default:
                self.todo(f"{kind}({key}=...) has no torch equivalent in this rewrite")
                return None
        activation = literal(a.get("activation"), "?") if "activation" in a else "tanh"
        nonlinearity: list[cst.Arg] = []
        if kind == "SimpleRNN" and activation == "relu":
            nonlinearity = [arg("relu", "nonlinearity")]
        elif activation != "tanh" or self.flag(a, "recurrent_activation", "sigmoid") != "sigmoid":
            self.todo(f"{kind} with non-default activations has no torch module")
            return None
        n_in = self.in_size()
        if n_in is None:
            self.todo(f"{kind} needs the input feature size; pass --input-shape")
            return None
        args = [arg(n_in), arg(a["units"]), *nonlinearity]
        if "use_bias" in a and literal(a["use_bias"], None) is not True:
            args.append(arg(a["use_bias"], "bias"))
        args.append(arg(cst.Name("True"), "batch_first"))
        if bidirectional:
            args.append(arg(cst.Name("True"), "bidirectional"))
        return call(_MODULES[kind], *args)

    def rnn(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        if not self.is_site():
            return None  # e.g. the layer inside Bidirectional(...): rewritten with it, marked by leftover-keras if not
        return self._module(node, name, bidirectional=False)

    def bidirectional(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["layer", "merge_mode", "weights", "backward_layer"])
        if literal(a.get("merge_mode"), "concat") != "concat" or "backward_layer" in a:
            self.todo("Bidirectional merge_mode other than 'concat' (or a custom backward_layer)")
            return None
        original = self._original
        inner = original.args[0].value if original is not None and original.args else None
        if not isinstance(inner, cst.Call):
            self.todo("Bidirectional of a layer built elsewhere")
            return None
        inner_name = self.ctx.qualified_name(inner.func) or ""
        if inner_name not in self.TARGETS or inner_name.endswith("Bidirectional"):
            self.todo(f"Bidirectional({inner_name.rsplit('.', 1)[-1]}) is not a recurrent layer this rewrite knows")
            return None
        return self._module(inner, inner_name, bidirectional=True)
