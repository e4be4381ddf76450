"""F.dropout(x, p, training) -> keras.random.dropout, keeping torch's default training=True."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal


class FunctionalDropoutRule(CallRule):
    id = "functional-dropout"
    description = ("F.dropout(x, p, training=self.training) -> (keras.random.dropout(x, rate=p) if training else x); "
                   "without training= it always drops, as torch does")
    TARGETS = {"torch.nn.functional.dropout": "dropout"}
    SCOPE = "tensor"
    EXAMPLES = (
        Example(model_src(forward=("return F.dropout(x, 0.2, training=training)",)),
                model_src(forward=("return (keras.random.dropout(x, rate=0.2) if training else x)",), keras=True)),
    )

    def dropout(self, node: cst.Call, name: str) -> cst.BaseExpression:
        a = bind_args(node, ["input", "p", "training", "inplace"])
        drop = call("keras.random.dropout", arg(a["input"]), arg(a.get("p", lit(0.5)), "rate"))
        if "training" not in a or literal(a["training"], None) is True:
            return drop
        if literal(a["training"], None) is False:
            return a["input"]
        return cst.IfExp(test=a["training"], body=drop, orelse=a["input"],
                         lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
