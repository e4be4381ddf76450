"""nn.Embedding(num, dim) -> keras.layers.Embedding(num, dim); weights copy without transpose."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, literal


class EmbeddingRule(CallRule):
    id = "embedding"
    description = ("nn.Embedding(num, dim, padding_idx) -> keras.layers.Embedding(num, dim) (padding_idx only affects "
                   "init and gradients); max_norm is marked")
    TARGETS = {"torch.nn.Embedding": "emb"}
    EXAMPLES = (
        Example(model_src(("self.emb = nn.Embedding(1000, 32, padding_idx=0)",)),
                model_src(("self.emb = keras.layers.Embedding(1000, 32)",), keras=True)),
        Example(model_src(("self.emb = nn.Embedding(10, 4, max_norm=1.0)",)),
                model_src(("# crossport: TODO(embedding): max_norm renormalises rows at lookup; Keras has no equivalent",
                           "self.emb = nn.Embedding(10, 4, max_norm=1.0)"))),
    )

    def emb(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["num_embeddings", "embedding_dim", "padding_idx", "max_norm", "norm_type",
                             "scale_grad_by_freq", "sparse", "_weight", "_freeze", "device", "dtype"])
        if "max_norm" in a and literal(a["max_norm"], 1) is not None:
            self.todo("max_norm renormalises rows at lookup; Keras has no equivalent")
            return None
        if "_weight" in a:
            self.todo("an initial _weight tensor is not translated")
            return None
        return call("keras.layers.Embedding", arg(a["num_embeddings"]), arg(a["embedding_dim"]))
