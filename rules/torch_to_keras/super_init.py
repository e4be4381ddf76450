"""super(M, self).__init__() / nn.Module.__init__(self) -> super().__init__(**kwargs), and __init__ gains **kwargs.

Keras layers take name/dtype/trainable through **kwargs; forwarding them keeps the class a well-behaved Layer.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_tools import expr

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
                new_call = expr("super().__init__(**kwargs)")
                body[i] = line.with_changes(body=[cst.Expr(new_call)])
                found = True
        if not found:
            return updated_node
        params = updated_node.params
        if params.star_kwarg is None:
            kwargs = _kwargs_param(updated_node)
            params = params.with_changes(star_kwarg=kwargs)
            if kwargs.comma is not cst.MaybeSentinel.DEFAULT:  # one parameter per line: put **kwargs on its own line
                plist = list(params.kwonly_params) or list(params.params)
                moved = plist[-1].with_changes(comma=cst.Comma(whitespace_after=updated_node.whitespace_before_params))
                if params.kwonly_params:
                    params = params.with_changes(kwonly_params=[*plist[:-1], moved])
                else:
                    params = params.with_changes(params=[*plist[:-1], moved])
        return updated_node.with_changes(params=params, body=updated_node.body.with_changes(body=body))


def _kwargs_param(func: cst.FunctionDef) -> cst.Param:
    """``**kwargs`` in the style of the signature: on its own line when the parameters are one per line."""
    params = func.params
    last = (list(params.params) + list(params.kwonly_params))[-1:] or []
    comma = last[0].comma if last else cst.MaybeSentinel.DEFAULT
    if isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace) and isinstance(
        func.whitespace_before_params, cst.ParenthesizedWhitespace
    ):
        # f(\n    a,\n    b,\n) -> f(\n    a,\n    b,\n    **kwargs,\n): done by the caller re-using these pieces.
        return cst.Param(name=cst.Name("kwargs"), star="**",
                         comma=cst.Comma(whitespace_after=comma.whitespace_after))
    return cst.Param(name=cst.Name("kwargs"), star="**")
