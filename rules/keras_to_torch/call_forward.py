"""def call(self, x, training=None, mask=None) -> def forward(self, x); ``training`` -> ``self.training``.

PyTorch carries the mode on the module (``model.eval()``), Keras passes it as an argument.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import expr
from rules.keras_to_torch._base import keras_src

_BEFORE = keras_src((), ("if training:", "    x = x * 2", "return x")).replace(
    "def call(self, x)", "def call(self, x, training=None, mask=None)")
_AFTER = keras_src((), ("if self.training:", "    x = x * 2", "return x")).replace("def call(self, x)", "def forward(self, x)")


class CallForwardRule(Rule):
    id = "call-forward"
    description = ("call(self, x, training=None, mask=None) -> forward(self, x); the training argument -> "
                   "self.training; build(self, input_shape) is marked (torch modules size themselves in __init__)")
    order = 85
    EXAMPLES = (
        Example(_BEFORE, _AFTER),
        Example(keras_src((), ("return x",)), keras_src((), ("return x",)).replace("def call", "def forward")),
    )

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.BaseExpression:
        if original_node.value == "training" and self.ctx.current_function() == "call" and self.ctx.current_class():
            return expr("self.training")
        return updated_node

    # ``training`` as a parameter, keyword or attribute name is not the argument: undo leave_Name there.
    def leave_Param(self, original_node: cst.Param, updated_node: cst.Param) -> cst.Param:
        changed = original_node.name.value == "training" and not isinstance(updated_node.name, cst.Name)
        return updated_node.with_changes(name=original_node.name) if changed else updated_node

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        changed = original_node.attr.value == "training" and not isinstance(updated_node.attr, cst.Name)
        return updated_node.with_changes(attr=original_node.attr) if changed else updated_node

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        changed = original_node.keyword is not None and original_node.keyword.value == "training" and (
            not isinstance(updated_node.keyword, cst.Name))
        return updated_node.with_changes(keyword=original_node.keyword) if changed else updated_node

    def leave_FunctionDef(self, original_node: cst.FunctionDef, updated_node: cst.FunctionDef) -> cst.FunctionDef:
        if self.ctx.current_class() is None or self.ctx.current_function() != original_node.name.value:
            return updated_node
        if original_node.name.value == "build":
            self.todo("build() creates weights from the input shape; create them in __init__ (torch has no build step)")
            return updated_node
        if original_node.name.value != "call":
            return updated_node
        params = updated_node.params
        kept = [p for p in params.params if p.name.value not in ("training", "mask")]
        if kept:
            kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        kwonly = [p for p in params.kwonly_params if p.name.value not in ("training", "mask")]
        params = params.with_changes(params=kept, kwonly_params=kwonly)
        if not kwonly and isinstance(params.star_arg, cst.ParamStar):
            params = params.with_changes(star_arg=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(name=cst.Name("forward"), params=params)
