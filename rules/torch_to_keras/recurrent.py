"""nn.LSTM / nn.GRU (batch_first, one layer, one direction) -> keras.layers.LSTM/GRU(return_sequences=True).

The call site ``out, _ = self.rnn(x)`` becomes ``out = self.rnn(x)``: torch returns (output, state) where the
state has a leading layers axis Keras does not have, so code that uses the state is marked instead.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, literal, self_attr

_PARAMS = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size",
           "device", "dtype"]


def unpack_first(rule: CallRule, original: cst.Assign, updated: cst.Assign, kinds: tuple[str, ...], what: str,
                 *, call_must_change: bool = False) -> cst.Assign:
    """``out, _ = self.attr(...)`` -> ``out = self.attr(...)`` when ``self.attr`` is one of ``kinds``."""
    info = rule.ctx.current_class()
    if info is None or not rule.ctx.in_tensor_code() or len(original.targets) != 1:
        return updated
    if call_must_change and updated.value.deep_equals(original.value):
        return updated  # the call itself was left (and marked): keep the torch unpacking too
    value = original.value
    if not isinstance(value, cst.Call) or info.rnn_attrs.get(self_attr(value.func) or "") not in kinds:
        return updated
    target = original.targets[0].target
    if isinstance(target, cst.Tuple) and len(target.elements) == 2:
        second = target.elements[1].value
        if isinstance(second, cst.Name) and second.value == "_":
            first = updated.targets[0].target.elements[0].value  # type: ignore[attr-defined]
            return updated.with_changes(targets=[cst.AssignTarget(first)])
    rule.todo(f"{what} state outputs differ between frameworks (torch returns (output, state)); use `out, _ = ...`")
    return updated


class RecurrentRule(CallRule):
    id = "recurrent"
    description = ("nn.LSTM / nn.GRU with batch_first=True, one layer, one direction -> keras.layers.LSTM/GRU("
                   "hidden, return_sequences=True[, reset_after=True]); `out, _ = self.rnn(x)` -> `out = self.rnn(x)`")
    TARGETS = {"torch.nn.LSTM": "lstm", "torch.nn.GRU": "gru"}
    EXAMPLES = (
        Example(model_src(("self.rnn = nn.LSTM(16, 32, batch_first=True)",), ("out, _ = self.rnn(x)", "return out")),
                model_src(("self.rnn = keras.layers.LSTM(32, return_sequences=True)",), ("out = self.rnn(x)", "return out"),
                          keras=True)),
        Example(model_src(("self.rnn = nn.GRU(16, 32, batch_first=True)",)),
                model_src(("self.rnn = keras.layers.GRU(32, return_sequences=True, reset_after=True)",), keras=True)),
        Example(model_src(("self.rnn = nn.LSTM(16, 32)",)),
                model_src(("# crossport: TODO(recurrent): batch_first=False (time-major) input: Keras RNNs are batch-major",
                           "self.rnn = nn.LSTM(16, 32)"))),
    )

    def _check(self, a: dict[str, cst.BaseExpression]) -> bool:
        if literal(a.get("batch_first"), False) is not True:
            self.todo("batch_first=False (time-major) input: Keras RNNs are batch-major")
            return False
        for key, ok in (("num_layers", 1), ("bidirectional", False), ("proj_size", 0), ("bias", True)):
            if key in a and literal(a[key], None) != ok:
                self.todo(f"{key}={literal(a[key], '...')!r} is not translated (stack layers / Bidirectional by hand)")
                return False
        return True

    def lstm(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, _PARAMS)
        if not self._check(a):
            return None
        return call("keras.layers.LSTM", arg(a["hidden_size"]), arg(True, "return_sequences"))

    def gru(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, _PARAMS)
        if not self._check(a):
            return None
        return call("keras.layers.GRU", arg(a["hidden_size"]), arg(True, "return_sequences"), arg(True, "reset_after"))

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        return unpack_first(self, original_node, updated_node, ("lstm", "gru"), "recurrent")

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        return subscript_zero(self, original_node, updated_node, ("lstm", "gru"))


def subscript_zero(rule: CallRule, original: cst.Subscript, updated: cst.Subscript, kinds: tuple[str, ...]) -> cst.BaseExpression:
    """``self.attr(...)[0]`` -> ``self.attr(...)``."""
    info = rule.ctx.current_class()
    if info is None or not rule.ctx.in_tensor_code() or not isinstance(original.value, cst.Call):
        return updated
    if info.rnn_attrs.get(self_attr(original.value.func) or "") not in kinds:
        return updated
    if len(original.slice) == 1 and isinstance(original.slice[0].slice, cst.Index) and literal(
        original.slice[0].slice.value, None
    ) == 0:
        return updated.value
    return updated
