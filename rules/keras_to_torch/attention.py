"""layers.MultiHeadAttention -> nn.MultiheadAttention(E, heads, batch_first=True) when heads * key_dim == E.

torch packs q/k/v into one in_proj of width E, so Keras attention with a key_dim that does not split the query
width evenly (or a different value_dim / output_shape) has no torch module and is marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src


class AttentionRule(KerasCallRule):
    id = "attention"
    description = ("layers.MultiHeadAttention(num_heads, key_dim) -> nn.MultiheadAttention(E, num_heads, "
                   "batch_first=True) (E from --input-shape; needs num_heads * key_dim == E)")
    TARGETS = {"keras.layers.MultiHeadAttention": "mha"}
    EXAMPLES = (
        Example(keras_src(("self.att = layers.MultiHeadAttention(num_heads=4, key_dim=16)",)),
                keras_src(("# crossport: TODO(attention): MultiHeadAttention needs the query width; pass --input-shape",
                           "self.att = layers.MultiHeadAttention(num_heads=4, key_dim=16)"))),
    )

    def mha(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape",
                             "attention_axes", "flash_attention", "kernel_initializer", "bias_initializer"])
        width = self.in_size()
        if width is None:
            self.todo("MultiHeadAttention needs the query width; pass --input-shape")
            return None
        heads, key_dim = literal(a.get("num_heads"), None), literal(a.get("key_dim"), None)
        value_dim = literal(a.get("value_dim"), None) if "value_dim" in a else key_dim
        recorded = self.ctx.facts_for(self._original, "#heads") if self._original is not None else None
        if isinstance(recorded, (list, tuple)) and len(recorded) == 3:  # the built layer's sizes (--input-shape)
            heads, key_dim, value_dim = recorded[0], recorded[1], recorded[2] if recorded[2] is not None else recorded[1]
        if not (isinstance(heads, int) and isinstance(key_dim, int)) or heads * key_dim != width or value_dim != key_dim:
            self.todo("torch's MultiheadAttention needs num_heads * key_dim == query width and value_dim == key_dim")
            return None
        if literal(a.get("output_shape"), None) is not None or literal(a.get("attention_axes"), None) is not None:
            self.todo("output_shape / attention_axes have no torch equivalent")
            return None
        args = [arg(width), arg(a["num_heads"])]
        if "dropout" in a and literal(a["dropout"], None) != 0:
            args.append(arg(a["dropout"], "dropout"))
        if "use_bias" in a and literal(a["use_bias"], None) is not True:
            args.append(arg(a["use_bias"], "bias"))
        args.append(arg(cst.Name("True"), "batch_first"))
        return call("nn.MultiheadAttention", *args)
