"""Mark model code that still uses torch after every other rule ran: nothing is silently left half-translated."""
from __future__ import annotations

from rules.base import Example, LeftoverRule, model_src


class LeftoverTorchRule(LeftoverRule):
    id = "leftover-torch"
    description = "any statement in a model class that still references torch after rewriting is marked with a TODO"
    EXAMPLES = (
        Example(model_src(forward=("noise = torch.randn_like(x)", "return x + noise")),
                model_src(forward=("# crossport: TODO(leftover-torch): no rule translates torch.randn_like",
                                   "noise = torch.randn_like(x)", "return x + noise"))),
    )

    def source_aliases(self) -> set[str]:
        return self.ctx.analysis.torch_aliases
