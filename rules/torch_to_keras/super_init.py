"""super(M, self).__init__() / nn.Module.__init__(self) -> super().__init__(**kwargs), and __init__ gains **kwargs.

Keras layers take name/dtype/trainable through **kwargs; forwarding them keeps the class a well-behaved Layer.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src

_AFTER_INIT = model_src(("self.fc = nn.Linear(2, 2)",)).replace(
    "def __init__(self):\n        super().__init__()", "def __init__(self, **kwargs):\n        super().__init__(**kwargs)")


class SuperInitRule(Rule):
    id = "super-init"
    description = ("super().__init__() in both spellings (and nn.Module.__init__(self)) -> super().__init__(**kwargs); "
                   "__init__ gains **kwargs")
    order = 80
    EXAMPLES = (
        Example(model_src(("self.fc = nn.Linear(2, 2)",)), _AFTER_INIT),
        Example(model_src(("self.fc = nn.Linear(2, 2)",)).replace("super().__init__()", "super(M, self).__init__()"),
                _AFTER_INIT),
        Example(model_src(("self.fc = nn.Linear(2, 2)",)).replace("super().__init__()", "nn.Module.__init__(self)"),
                _AFTER_INIT),
    )

    def _is_super_init(self, stmt: cst.BaseSmallStatement) -> bool:
        if not isinstance(stmt, cst.Expr) or not isinstance(stmt.value, cst.Call):
            return False
        func = stmt.value.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "__init__":
            return False
        inner = func.value
        if isinstance(inner, cst.Call) and isinstance(inner.func, cst.Name) and inner.func.value == "super":
            return not stmt.value.args
        if self.ctx.qualified_name(inner) == "torch.nn.Module":
            return len(stmt.value.args) == 1
        return False

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        if original_node.name.value != "__init__" or self.ctx.current_class() is None:
            return updated_node
        body = list(updated_node.body.body)
        found = False
        for i, (orig_line, line) in enumerate(zip(original_node.body.body, body)):
            if isinstance(orig_line, cst.SimpleStatementLine) and isinstance(line, cst.SimpleStatementLine) and len(
                line.body
            ) == 1 and self._is_super_init(orig_line.body[0]):
                new_call = cst.parse_expression("super().__init__(**kwargs)")
                body[i] = line.with_changes(body=[cst.Expr(new_call)])
                found = True
        if not found:
            return updated_node
        params = updated_node.params
        if params.star_kwarg is None:
            params = params.with_changes(star_kwarg=cst.Param(name=cst.Name("kwargs")))
        return updated_node.with_changes(params=params, body=updated_node.body.with_changes(body=body))
