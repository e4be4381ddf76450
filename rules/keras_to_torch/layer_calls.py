"""Call sites of layers whose torch module is called differently: RNNs, attention, merge layers held as attributes.

``self.lstm(x)`` -> ``self.lstm(x)[0][:, -1]`` (Keras' last step), ``[0]`` with return_sequences; bidirectional
last step -> the final forward and backward states concatenated; ``self.att(q, v)`` -> ``self.att(q, v, v,
need_weights=False)[0]``. The kind of each attribute comes from the pre-pass (also for functional-API layers).
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import code, self_attr, expr
from rules.keras_to_torch._base import keras_src


class LayerCallsRule(Rule):
    id = "layer-calls"
    description = ("calls of recurrent/attention layers get torch's return conventions: self.lstm(x) -> "
                   "self.lstm(x)[0][:, -1] (last step), [0] with return_sequences; self.att(q, v) -> "
                   "self.att(q, v, v, need_weights=False)[0]; training= arguments are dropped")
    order = 60
    EXAMPLES = (
        Example(keras_src(("self.lstm = layers.LSTM(8, return_sequences=True)", "self.gru = layers.GRU(8)"),
                          ("x = self.lstm(x, training=training)", "return self.gru(x)")).replace(
                              "def call(self, x)", "def call(self, x, training=None)"),
                keras_src(("self.lstm = layers.LSTM(8, return_sequences=True)", "self.gru = layers.GRU(8)"),
                          ("x = self.lstm(x)[0]", "return self.gru(x)[0][:, -1]")).replace(
                              "def call(self, x)", "def call(self, x, training=None)")),
        Example(keras_src(("self.att = layers.MultiHeadAttention(2, 4)",), ("return self.att(x, x)",)),
                keras_src(("self.att = layers.MultiHeadAttention(2, 4)",),
                          ("return self.att(x, x, x, need_weights=False)[0]",))),
    )

    def _kind(self, attr: str) -> str | None:
        info = self.ctx.current_model()
        if info is not None and attr in info.rnn_attrs:
            return info.rnn_attrs[attr]
        return None

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if not self.ctx.in_tensor_code():
            return updated_node
        attr = self_attr(updated_node.func)
        if attr is None:
            return updated_node
        args = [a for a in updated_node.args if not (a.keyword is not None and a.keyword.value == "training")]
        if len(args) != len(updated_node.args):
            args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT) if args else args
            updated_node = updated_node.with_changes(args=args)
        kind = self._kind(attr)
        if kind is None:
            return updated_node
        if kind == "mha":
            return self._attention(updated_node)
        if ":" not in kind:
            return updated_node
        if len(updated_node.args) != 1 or updated_node.args[0].keyword is not None:
            self.todo("recurrent layer called with initial states or masks")
            return updated_node
        cell, mode = kind.split(":")
        text = code(updated_node)
        if mode == "seq":
            return expr(f"{text}[0]")
        if cell.startswith("bi"):
            state = f"{text}[1][0]" if cell == "bilstm" else f"{text}[1]"
            self.ctx.add_import("torch")
            return expr(f"torch.cat(tuple({state}), dim=-1)")
        return expr(f"{text}[0][:, -1]")

    def _attention(self, node: cst.Call) -> cst.BaseExpression:
        names = ["query", "value", "key"]
        bound: dict[str, cst.BaseExpression] = {}
        for i, a in enumerate(node.args):
            key = a.keyword.value if a.keyword is not None else (names[i] if i < 3 else "?")
            bound[key] = a.value
        if set(bound) - set(names) or "query" not in bound or "value" not in bound:
            self.todo("MultiHeadAttention called with masks or extra arguments (mask polarity differs in torch)")
            return node
        q, v = code(bound["query"]), code(bound["value"])
        k = code(bound["key"]) if "key" in bound else v
        func = code(node.func)
        return expr(f"{func}({q}, {k}, {v}, need_weights=False)[0]")
