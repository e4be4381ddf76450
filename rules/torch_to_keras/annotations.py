"""Type annotations naming torch types (x: torch.Tensor) are dropped inside model code: Keras has no one type."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_walk import walk


class _TorchRefs(cst.CSTVisitor):
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.found = False

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if (self.rule.ctx.qualified_name(node) or "").startswith("torch"):
            self.found = True
        return True

    def visit_Name(self, node: cst.Name) -> None:
        if (self.rule.ctx.qualified_name(node) or "").startswith("torch"):
            self.found = True


class AnnotationsRule(Rule):
    id = "annotations"
    description = "x: torch.Tensor / -> torch.Tensor annotations in model methods are removed (tensors are backend types in Keras)"
    EXAMPLES = (
        Example(model_src(forward=("return x",)).replace("def forward(self, x):", "def forward(self, x: torch.Tensor) -> torch.Tensor:"),
                model_src(forward=("return x",))),
        Example(model_src(forward=("return x",)).replace("def forward(self, x):", "def forward(self, x: int) -> list:")),
        Example("import torch.nn as nn\n\n\ndef block(n: int, act: nn.Module = None) -> nn.Sequential:\n"
                "    return nn.Sequential(nn.Linear(n, n))\n",
                "import torch.nn as nn\n\n\ndef block(n: int, act=None):\n    return nn.Sequential(nn.Linear(n, n))\n"),
    )

    def _is_torch(self, node: cst.Annotation) -> bool:
        refs = _TorchRefs(self)
        walk(node.annotation, refs)
        return refs.found

    def leave_Param(self, original_node: cst.Param, updated_node: cst.Param) -> cst.Param:
        if not self.ctx.in_model_scope() or original_node.annotation is None or not self._is_torch(original_node.annotation):
            return updated_node
        equal = updated_node.equal
        if updated_node.default is not None:  # `x: T = None` -> `x=None` (PEP 8 spacing without an annotation)
            equal = cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace(""))
        return updated_node.with_changes(annotation=None, equal=equal)

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        if not self.ctx.in_model_scope() or original_node.returns is None or not self._is_torch(original_node.returns):
            return updated_node
        return updated_node.with_changes(returns=None)
