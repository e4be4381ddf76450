"""Remove keras / tensorflow imports the rewritten code no longer uses (libcst's RemoveImportsVisitor decides)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule


def _is_keras(module: str) -> bool:
    return module.split(".")[0] in ("keras", "tensorflow")


class KerasImportsRule(Rule):
    id = "keras-imports"
    description = ("import keras / tensorflow as tf / from tensorflow.keras import layers are removed once nothing "
                   "uses them; imports still used (training code, TODOs) stay")
    order = 99
    EXAMPLES = (
        Example("import tensorflow as tf\nfrom keras import layers\nimport torch.nn as nn\n\nx = nn.ReLU()\n",
                "import torch.nn as nn\n\nx = nn.ReLU()\n"),
        Example("import keras\n\nmodel = keras.models.load_model('m.keras')\n"),
    )

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> cst.Import:
        if any(_is_keras(a.evaluated_name) for a in original_node.names):
            self.ctx.remove_import_if_unused(original_node)
        return updated_node

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        if original_node.module is not None and not original_node.relative:
            if _is_keras(cst.Module(body=[]).code_for_node(original_node.module)):
                self.ctx.remove_import_if_unused(original_node)
        return updated_node
