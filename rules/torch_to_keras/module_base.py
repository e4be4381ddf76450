"""class M(nn.Module) -> class M(keras.Model), or keras.layers.Layer for blocks used inside other models."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_tools import expr


class ModuleBaseRule(Rule):
    id = "module-base"
    description = ("class M(nn.Module) -> keras.Model for top-level models, keras.layers.Layer for blocks that other "
                   "model classes (or builder functions) in the file instantiate")
    order = 90
    EXAMPLES = (
        Example(model_src(), model_src(base="keras.Model", keras=True)),
        Example(
            "import torch.nn as nn\n\n\nclass Block(nn.Module):\n    pass\n\n\nclass Net(nn.Module):\n"
            "    def __init__(self):\n        super().__init__()\n        self.block = Block()\n",
            "import torch.nn as nn\nimport keras\n\n\nclass Block(keras.layers.Layer):\n    pass\n\n\nclass Net(keras.Model):\n"
            "    def __init__(self):\n        super().__init__()\n        self.block = Block()\n",
        ),
        Example("import torch.nn as nn\n\n\nclass Config:\n    pass\n"),
    )

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        info = self.ctx.current_class()
        if info is None:
            return updated_node
        bases = list(updated_node.bases)
        changed = False
        for i, base in enumerate(original_node.bases):
            if self.ctx.qualified_name(base.value) == "torch.nn.Module":
                target = "keras.layers.Layer" if info.used_as_block else "keras.Model"
                bases[i] = bases[i].with_changes(value=expr(target))
                changed = True
        if not changed:
            return updated_node
        self.ctx.add_import("keras")
        return updated_node.with_changes(bases=bases)
