"""nn.Identity() -> keras.layers.Identity()."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import call


class IdentityRule(CallRule):
    id = "identity"
    description = "nn.Identity(...) -> keras.layers.Identity() (torch ignores its arguments)"
    TARGETS = {"torch.nn.Identity": "identity"}
    EXAMPLES = (
        Example(model_src(("self.shortcut = nn.Identity()",)),
                model_src(("self.shortcut = keras.layers.Identity()",), keras=True)),
    )

    def identity(self, node: cst.Call, name: str) -> cst.BaseExpression:
        return call("keras.layers.Identity")
