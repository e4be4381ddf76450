"""def forward(self, x) -> def call(self, x[, training=None]); self.training -> training."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src

_FWD_BEFORE = model_src(forward=("if self.training:", "    x = x * 2", "return x"))


class ForwardCallRule(Rule):
    id = "forward-call"
    description = ("forward -> call; self.training -> the training argument, which call gains (training=None) when "
                   "the body needs it (Keras passes it down to sub-layers itself)")
    order = 85
    EXAMPLES = (
        Example(model_src(forward=("return x",)),
                model_src(forward=("return x",)).replace("def forward(self, x)", "def call(self, x)")),
        Example(_FWD_BEFORE, _FWD_BEFORE.replace("def forward(self, x)", "def call(self, x, training=None)")
                .replace("if self.training:", "if training:")),
    )

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._uses_training = False

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        if (
            self.ctx.in_tensor_code()
            and isinstance(original_node.value, cst.Name)
            and original_node.value.value == "self"
            and original_node.attr.value == "training"
        ):
            self._uses_training = True
            return cst.Name("training")
        return updated_node

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        if original_node.name.value != "forward" or self.ctx.current_class() is None:
            return updated_node
        uses_training, self._uses_training = self._uses_training, False
        params = updated_node.params
        names = {p.name.value for p in (*params.params, *params.kwonly_params)}
        if "training" not in names and uses_training:
            new = cst.Param(name=cst.Name("training"), default=cst.Name("None"),
                            equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                                  whitespace_after=cst.SimpleWhitespace("")))
            if params.star_arg is cst.MaybeSentinel.DEFAULT or params.star_arg is None:
                plist = list(params.params)
                if plist:
                    plist[-1] = plist[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
                params = params.with_changes(params=[*plist, new])
            else:
                params = params.with_changes(kwonly_params=[*params.kwonly_params, new])
        return updated_node.with_changes(name=cst.Name("call"), params=params)
