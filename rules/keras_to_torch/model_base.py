"""class M(keras.Model) / class B(keras.layers.Layer) -> nn.Module (PyTorch has one base for both)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import expr
from rules.keras_names import MODEL_BASES
from rules.keras_to_torch._base import keras_src


class ModelBaseRule(Rule):
    id = "model-base"
    description = "class M(keras.Model) and class B(keras.layers.Layer) (any spelling, tf.keras too) -> nn.Module"
    order = 90
    EXAMPLES = (
        Example(keras_src(), keras_src(torch=True).replace("class M(keras.Model)", "class M(nn.Module)")),
        Example(keras_src(base="layers.Layer", imports="from tensorflow.keras import layers\n"),
                keras_src(base="nn.Module", imports="from tensorflow.keras import layers\n", torch=True)),
        Example("import keras\n\n\nclass Config:\n    pass\n"),
    )

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        if self.ctx.current_class() is None:
            return updated_node
        bases = list(updated_node.bases)
        changed = False
        for i, base in enumerate(original_node.bases):
            if self.ctx.qualified_name(base.value) in MODEL_BASES:
                bases[i] = bases[i].with_changes(value=expr("nn.Module"))
                changed = True
        if not changed:
            return updated_node
        self.ctx.add_import("torch.nn", "nn")
        return updated_node.with_changes(bases=bases)
