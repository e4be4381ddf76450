"""Mark model code that still uses torch after every other rule ran: nothing is silently left half-translated."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src


class _Refs(cst.CSTVisitor):
    def __init__(self, aliases: set[str]) -> None:
        self.aliases = aliases
        self.found: list[str] = []

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        root = node
        while isinstance(root, cst.Attribute):
            root = root.value  # type: ignore[assignment]
        if isinstance(root, cst.Name) and root.value in self.aliases:
            self.found.append(cst.Module(body=[]).code_for_node(node))
        else:
            node.value.visit(self)  # ``keras.ops.relu``: the attribute name is not a reference to ``relu``
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.aliases:
            self.found.append(node.value)


class LeftoverTorchRule(Rule):
    id = "leftover-torch"
    description = "any statement in a model class that still references torch after rewriting is marked with a TODO"
    order = 98
    EXAMPLES = (
        Example(model_src(forward=("noise = torch.randn_like(x)", "return x + noise")),
                model_src(forward=("# crossport: TODO(leftover-torch): no rule translates torch.randn_like",
                                   "noise = torch.randn_like(x)", "return x + noise"))),
    )

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        if not self.ctx.in_model_scope() or self.ctx.statement_has_todo():
            return updated_node
        if any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in updated_node.body):
            return updated_node
        if not self.ctx.statement_words(updated_node) & self.ctx.analysis.torch_aliases:
            return updated_node
        refs = _Refs(self.ctx.analysis.torch_aliases)
        for small in updated_node.body:
            small.visit(refs)
        if refs.found:
            self.todo("no rule translates " + ", ".join(dict.fromkeys(refs.found)))
        return updated_node
