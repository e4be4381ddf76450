"""layers.Embedding -> nn.Embedding (same (input_dim, output_dim) table, no transpose)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call
from rules.keras_to_torch._base import KerasCallRule, keras_src


class EmbeddingRule(KerasCallRule):
    id = "embedding"
    description = "layers.Embedding(input_dim, output_dim) -> nn.Embedding(input_dim, output_dim); mask_zero is marked"
    TARGETS = {"keras.layers.Embedding": "embedding"}
    EXAMPLES = (
        Example(keras_src(("self.emb = layers.Embedding(1000, 64)",)),
                keras_src(("self.emb = nn.Embedding(1000, 64)",), torch=True)),
        Example(keras_src(("self.emb = layers.Embedding(100, 8, mask_zero=True)",)),
                keras_src(("# crossport: TODO(embedding): mask_zero=True propagates a mask Keras layers consume; "
                           "torch needs explicit padding masks",
                           "self.emb = layers.Embedding(100, 8, mask_zero=True)"))),
    )

    def embedding(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["input_dim", "output_dim", "embeddings_initializer", "embeddings_regularizer",
                             "embeddings_constraint", "mask_zero", "weights", "lora_rank"])
        if self.flag(a, "mask_zero", False) is not False:
            self.todo("mask_zero=True propagates a mask Keras layers consume; torch needs explicit padding masks")
            return None
        return call("nn.Embedding", arg(a["input_dim"]), arg(a["output_dim"]))
