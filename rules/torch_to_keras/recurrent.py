"""nn.LSTM / nn.GRU (batch_first, one layer, one direction) -> keras.layers.LSTM/GRU(return_sequences=True).

The call site ``out, _ = self.rnn(x)`` becomes ``out = self.rnn(x)``. When the state is used,
``out, (h, c) = self.lstm(x)`` becomes ``out, h, c = self.lstm(x)`` with ``return_state=True``; torch's state
has a leading (num_layers * directions) axis Keras does not have, so ``h[-1]``, ``h[0]`` and ``h.squeeze(0)``
become ``h`` and any other use of ``h`` is marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, expr, literal, self_attr
from rules.cst_walk import walk

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
    if isinstance(target, cst.Tuple) and len(target.elements) == 2 and self_attr(value.func) in info.state_attrs:
        first, state = updated.targets[0].target.elements  # type: ignore[attr-defined]
        if isinstance(state.value, cst.Tuple):  # out, (h, c) -> out, h, c
            flat = [first.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))]
            inner = list(state.value.elements)
            flat += [e.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) for e in inner[:-1]]
            flat.append(inner[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT))
            return updated.with_changes(targets=[cst.AssignTarget(cst.Tuple(flat, lpar=[], rpar=[]))])
        return updated  # GRU: out, h = ... has the same shape in Keras with return_state=True
    rule.todo(f"{what} state outputs differ between frameworks (torch returns (output, state)); use `out, _ = ...`")
    return updated


class RecurrentRule(CallRule):
    id = "recurrent"
    description = ("nn.LSTM / nn.GRU with batch_first=True, one layer, one direction -> keras.layers.LSTM/GRU("
                   "hidden, return_sequences=True[, reset_after=True]); `out, _ = self.rnn(x)` -> `out = self.rnn(x)`; "
                   "`out, (h, c) = ...` -> return_state=True and `out, h, c = ...` with h[-1]/h[0]/h.squeeze(0) -> h, other "
                   "uses of h -> keras.ops.expand_dims(h, 0); `self.rnn(x, (h0, c0))` -> initial_state=[h0[0], c0[0]]")
    TARGETS = {"torch.nn.LSTM": "lstm", "torch.nn.GRU": "gru"}
    EXAMPLES = (
        Example(model_src(("self.rnn = nn.LSTM(16, 32, batch_first=True)",), ("out, _ = self.rnn(x)", "return out")),
                model_src(("self.rnn = keras.layers.LSTM(32, return_sequences=True)",), ("out = self.rnn(x)", "return out"),
                          keras=True)),
        Example(model_src(("self.rnn = nn.GRU(16, 32, batch_first=True)",)),
                model_src(("self.rnn = keras.layers.GRU(32, return_sequences=True, reset_after=True)",), keras=True)),
        Example(model_src(("self.rnn = nn.LSTM(16, 32, batch_first=True)",),
                          ("_, (h, c) = self.rnn(x)", "return h[-1] + c.squeeze(0)")),
                model_src(("self.rnn = keras.layers.LSTM(32, return_sequences=True, return_state=True)",),
                          ("_, h, c = self.rnn(x)", "return h + c"), keras=True)),
        Example(model_src(("self.rnn = nn.GRU(16, 32, batch_first=True)",), ("out, h = self.rnn(x)", "return h")),
                model_src(("self.rnn = keras.layers.GRU(32, return_sequences=True, reset_after=True, return_state=True)",),
                          ("out, h = self.rnn(x)", "return keras.ops.expand_dims(h, 0)"), keras=True)),
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

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._state_reads: set[int] = set()

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        info = self.ctx.current_class()
        target = self_attr(original_node.targets[0].target) if len(original_node.targets) == 1 else None
        value = updated_node.value
        if (info is not None and target in info.state_attrs and isinstance(value, cst.Call)
                and isinstance(value.func, cst.Attribute) and value.func.attr.value in ("LSTM", "GRU")):
            return updated_node.with_changes(value=value.with_changes(
                args=call("f", *value.args, arg(True, "return_state")).args))
        return unpack_first(self, original_node, updated_node, ("lstm", "gru"), "recurrent")

    def _is_state(self, node: cst.BaseExpression) -> bool:
        info = self.ctx.current_class()
        return info is not None and self.ctx.in_tensor_code() and isinstance(node, cst.Name) and (
            node.value in info.state_names)

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        if self._is_state(original_node.value) and len(original_node.slice) == 1 and isinstance(
            original_node.slice[0].slice, cst.Index
        ) and literal(original_node.slice[0].slice.value, None) in (0, -1):
            name = cst.Name(original_node.value.value)  # type: ignore[attr-defined]
            self._state_reads.add(id(name))
            return name
        return subscript_zero(self, original_node, updated_node, ("lstm", "gru"))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = original_node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "squeeze" and self._is_state(func.value) and (
            len(original_node.args) == 1 and literal(original_node.args[0].value, None) == 0
        ):
            name = cst.Name(func.value.value)  # type: ignore[attr-defined]
            self._state_reads.add(id(name))
            return name
        initial = self._initial_state(original_node, updated_node)
        if initial is not None:
            return initial
        return super().leave_Call(original_node, updated_node)

    def _initial_state(self, original: cst.Call, updated: cst.Call) -> cst.Call | None:
        """``self.lstm(x, (h0, c0))`` / ``self.lstm(x, hx=state)``: torch's states carry a leading (layers) axis and
        come as the second argument (Keras' second argument is a mask) -> ``initial_state=[h0[0], c0[0]]``."""
        info = self.ctx.current_class()
        attr = self_attr(original.func)
        kind = info.rnn_attrs.get(attr or "") if info is not None and self.ctx.in_tensor_code() else None
        if kind not in ("lstm", "gru") or len(updated.args) != 2 or updated.args[0].keyword is not None:
            return None
        state = updated.args[1]
        if state.keyword is not None and state.keyword.value != "hx":
            return None
        value = state.value
        if isinstance(value, cst.Name) and value.value == "None":
            return updated.with_changes(args=[updated.args[0].with_changes(comma=cst.MaybeSentinel.DEFAULT)])
        text = cst.Module(body=[]).code_for_node(value)
        if isinstance(value, cst.Tuple) and kind == "lstm" and len(value.elements) == 2:
            parts = [cst.Module(body=[]).code_for_node(e.value) for e in value.elements]
            keras_state = f"[{parts[0]}[0], {parts[1]}[0]]"
        elif kind == "lstm":
            keras_state = f"None if {text} is None else [{text}[0][0], {text}[1][0]]"
        else:
            keras_state = f"None if {text} is None else [{text}[0]]"
        first = updated.args[0].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
        return updated.with_changes(args=[first, arg(expr(keras_state), "initial_state")])

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        info = self.ctx.current_class()
        if info is None or not info.state_names or not self.ctx.in_tensor_code():
            return updated_node
        if not info.state_names & self.ctx.statement_words(updated_node):
            return updated_node
        finder = _BareState(info.state_names, self._state_reads)
        for small in updated_node.body:
            if isinstance(small, cst.Assign):
                walk(small.value, finder)
            else:
                walk(small, finder)
        if not finder.found:
            return updated_node
        # Any other use of the state sees torch's (layers, N, H) tensor: give Keras' (N, H) state that axis back.
        body = []
        for small in updated_node.body:
            if isinstance(small, (cst.Assign, cst.Return, cst.Expr)) and small.value is not None:
                small = small.with_changes(value=small.value.visit(_AddLayersAxis(info.state_names, self._state_reads)))
            body.append(small)
        self.ctx.add_import("keras")
        return updated_node.with_changes(body=body)


class _AddLayersAxis(cst.CSTTransformer):
    """Bare uses of an RNN state name -> ``keras.ops.expand_dims(h, 0)`` (torch's leading layers axis)."""

    def __init__(self, names: set[str], allowed: set[int]) -> None:
        super().__init__()
        self.names, self.allowed = names, allowed

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        return True

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        return updated_node.with_changes(attr=original_node.attr)  # ``x.h``: an attribute name, not the state

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        if original_node.value in self.names and id(original_node) not in self.allowed:
            return call("keras.ops.expand_dims", arg(cst.Name(original_node.value)), arg(0))
        return updated_node


class _BareState(cst.CSTVisitor):
    def __init__(self, names: set[str], allowed: set[int]) -> None:
        self.names, self.allowed = names, allowed
        self.found = ""

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.names and id(node) not in self.allowed and not self.found:
            self.found = node.value

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        walk(node.value, self)
        return False


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
