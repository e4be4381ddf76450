"""layers.Identity -> nn.Identity."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import call
from rules.keras_to_torch._base import KerasCallRule, keras_src


class IdentityRule(KerasCallRule):
    id = "identity"
    description = "layers.Identity() -> nn.Identity()"
    TARGETS = {"keras.layers.Identity": "identity"}
    EXAMPLES = (
        Example(keras_src(("self.skip = layers.Identity()",)), keras_src(("self.skip = nn.Identity()",), torch=True)),
    )

    def identity(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        self.bind(node, [])
        return call("nn.Identity")
