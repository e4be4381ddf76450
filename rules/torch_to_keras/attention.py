"""nn.MultiheadAttention(E, H, batch_first=True) -> keras.layers.MultiHeadAttention(H, key_dim=E // H).

The call site swaps argument order (torch: query, key, value; Keras: query, value, key) and drops the
attention-weights output; masks are marked (torch True = blocked, Keras True = may attend).
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, code, expr, literal, self_attr, Unbindable
from rules.torch_to_keras.recurrent import subscript_zero, unpack_first


class AttentionRule(CallRule):
    id = "attention"
    description = ("nn.MultiheadAttention(E, H, batch_first=True) -> keras.layers.MultiHeadAttention(num_heads=H, "
                   "key_dim=E // H); `a, _ = self.attn(q, k, v)` -> `a = self.attn(q, v, key=k)`")
    TARGETS = {"torch.nn.MultiheadAttention": "mha"}
    EXAMPLES = (
        Example(model_src(("self.attn = nn.MultiheadAttention(64, 4, batch_first=True)",),
                          ("out, _ = self.attn(x, x, x, need_weights=False)", "return out")),
                model_src(("self.attn = keras.layers.MultiHeadAttention(num_heads=4, key_dim=64 // 4)",),
                          ("out = self.attn(x, x)", "return out"), keras=True)),
        Example(model_src(("self.attn = nn.MultiheadAttention(8, 2, dropout=0.1, batch_first=True)",),
                          ("return self.attn(x, y, z)[0]",)),
                model_src(("self.attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8 // 2, dropout=0.1)",),
                          ("return self.attn(x, z, key=y)",), keras=True)),
        Example(model_src(("self.attn = nn.MultiheadAttention(8, 2, batch_first=True)",),
                          ("out, _ = self.attn(x, x, x, attn_mask=m)", "return out")),
                model_src(("self.attn = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8 // 2)",),
                          ("# crossport: TODO(attention): attention masks have opposite polarity in Keras (True = may "
                           "attend); translate attn_mask by hand",
                           "out, _ = self.attn(x, x, x, attn_mask=m)", "return out"), keras=True)),
    )

    def mha(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["embed_dim", "num_heads", "dropout", "bias", "add_bias_kv", "add_zero_attn", "kdim",
                             "vdim", "batch_first", "device", "dtype"])
        if literal(a.get("batch_first"), False) is not True:
            self.todo("batch_first=False (sequence-major) input: Keras attention is batch-major")
            return None
        for key in ("add_bias_kv", "add_zero_attn"):
            if key in a and literal(a[key], None) is not False:
                self.todo(f"{key} has no Keras equivalent")
                return None
        for key in ("kdim", "vdim"):
            if key in a and literal(a[key], 0) is not None:
                self.todo(f"{key} != embed_dim is not translated")
                return None
        key_dim = expr(f"{_paren(a['embed_dim'])} // {_paren(a['num_heads'])}")
        args = [arg(a["num_heads"], "num_heads"), arg(key_dim, "key_dim")]
        if "dropout" in a and literal(a["dropout"], None) != 0:
            args.append(arg(a["dropout"], "dropout"))
        if "bias" in a and literal(a["bias"], None) is not True:
            args.append(arg(a["bias"], "use_bias"))
        return call("keras.layers.MultiHeadAttention", *args)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        info = self.ctx.current_class()
        if info is not None and self.ctx.in_tensor_code() and info.rnn_attrs.get(self_attr(original_node.func) or "") == "mha":
            return self._call_site(updated_node)
        return super().leave_Call(original_node, updated_node)

    def _call_site(self, node: cst.Call) -> cst.BaseExpression:
        try:
            a = bind_args(node, ["query", "key", "value", "key_padding_mask", "need_weights", "attn_mask",
                                 "average_attn_weights", "is_causal"])
        except Unbindable as err:
            self.todo(f"cannot name the attention call arguments ({err})")
            return node
        if any(k in a and literal(a[k], 0) is not None for k in ("key_padding_mask", "attn_mask")):
            self.todo("attention masks have opposite polarity in Keras (True = may attend); translate attn_mask by hand")
            return node
        if "is_causal" in a and literal(a["is_causal"], None) is not False:
            self.todo("is_causal: use use_causal_mask=True in Keras")
            return node
        if not {"query", "key", "value"} <= a.keys():
            return node
        args = [arg(a["query"]), arg(a["value"])]
        if code(a["key"]) != code(a["value"]):
            args.append(arg(a["key"], "key"))
        return node.with_changes(args=call("f", *args).args)

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        return unpack_first(self, original_node, updated_node, ("mha",), "attention", call_must_change=True)

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        return subscript_zero(self, original_node, updated_node, ("mha",))


def _paren(node: cst.BaseExpression) -> str:
    text = code(node)
    return text if isinstance(node, (cst.Name, cst.Integer, cst.Attribute)) else f"({text})"
