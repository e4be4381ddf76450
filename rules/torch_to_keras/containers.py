"""nn.ModuleList -> list, nn.ModuleDict -> dict (Keras 3 tracks layers held in list/dict attributes)."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, call


class ContainersRule(CallRule):
    id = "containers"
    description = "nn.ModuleList([...]) -> [...], nn.ModuleDict({...}) -> {...} (auto-tracked by Keras 3)"
    TARGETS = {"torch.nn.ModuleList": "as_list", "torch.nn.ModuleDict": "as_dict"}
    EXAMPLES = (
        Example(model_src(("self.blocks = nn.ModuleList([nn.Linear(4, 4) for _ in range(3)])",)),
                model_src(("self.blocks = [nn.Linear(4, 4) for _ in range(3)]",), keras=True)),
        Example(model_src(("self.heads = nn.ModuleDict({'a': self.a})", "self.extra = nn.ModuleList()")),
                model_src(("self.heads = {'a': self.a}", "self.extra = []"), keras=True)),
    )

    def as_list(self, node: cst.Call, name: str) -> cst.BaseExpression:
        if not node.args:
            return cst.List([])
        value = node.args[0].value
        if isinstance(value, (cst.List, cst.ListComp)):
            return value
        return call("list", arg(value))

    def as_dict(self, node: cst.Call, name: str) -> cst.BaseExpression:
        if not node.args:
            return cst.Dict([])
        value = node.args[0].value
        if isinstance(value, (cst.Dict, cst.DictComp)):
            return value
        return call("dict", arg(value))
