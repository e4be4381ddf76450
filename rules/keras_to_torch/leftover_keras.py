"""Mark model code that still uses keras/tensorflow after every other rule ran: nothing is silently half-translated."""
from __future__ import annotations

from rules.base import Example, LeftoverRule
from rules.keras_to_torch._base import keras_src


class LeftoverKerasRule(LeftoverRule):
    id = "leftover-keras"
    description = "any statement of model code that still references keras/tensorflow after rewriting is marked"
    EXAMPLES = (
        Example(keras_src((), ("noise = keras.random.normal((2,))", "return x + noise")),
                keras_src((), ("# crossport: TODO(leftover-keras): no rule translates keras.random.normal",
                               "noise = keras.random.normal((2,))", "return x + noise"))),
    )

    def source_aliases(self) -> set[str]:
        return self.ctx.analysis.keras_aliases
