"""Remove torch imports the rewritten code no longer uses (libcst's RemoveImportsVisitor decides "unused")."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule


class TorchImportsRule(Rule):
    id = "torch-imports"
    description = ("import torch / torch.nn as nn / torch.nn.functional as F / from torch.nn import X are removed once "
                   "nothing uses them; imports still used (training code, TODOs) stay")
    order = 99
    EXAMPLES = (
        Example("import torch\nimport torch.nn as nn\nfrom torch.nn import functional as F\nimport keras\n\nx = keras.ops.relu\n",
                "import keras\n\nx = keras.ops.relu\n"),
        Example("import torch\n\nx = torch.zeros(3)\n"),
    )

    def _is_torch(self, module: str) -> bool:
        return module == "torch" or module.startswith("torch.")

    def leave_Import(self, original_node: cst.Import, updated_node: cst.Import) -> cst.Import:
        names = [cst.Module(body=[]).code_for_node(a.name) for a in original_node.names]
        if any(self._is_torch(n) for n in names):
            self.ctx.remove_import_if_unused(original_node)
        return updated_node

    def leave_ImportFrom(self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom) -> cst.ImportFrom:
        if original_node.module is not None and original_node.relative == ():
            if self._is_torch(cst.Module(body=[]).code_for_node(original_node.module)):
                self.ctx.remove_import_if_unused(original_node)
        return updated_node
