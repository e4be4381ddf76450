"""nn.Sequential(a, b) / nn.Sequential(*layers) / nn.Sequential(OrderedDict(...)) -> keras.Sequential([...])."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, call, list_of, expr


class SequentialRule(CallRule):
    id = "sequential"
    description = ("nn.Sequential(a, b), nn.Sequential(*layers), nn.Sequential(OrderedDict([...])) -> "
                   "keras.Sequential([...]) (OrderedDict names are dropped; weights still map by position)")
    TARGETS = {"torch.nn.Sequential": "seq"}
    EXAMPLES = (
        Example(model_src(("self.body = nn.Sequential(",
                           "    nn.Flatten(),",
                           "    self.head,  # comments survive",
                           ")")),
                model_src(("self.body = keras.Sequential([",
                           "    nn.Flatten(),",
                           "    self.head,  # comments survive",
                           "])"), keras=True)),
        Example(model_src(("self.shortcut = nn.Sequential()",)),
                model_src(("self.shortcut = keras.layers.Identity()",), keras=True)),
        Example(model_src(("self.body = nn.Sequential(self.a, self.b)",)),
                model_src(("self.body = keras.Sequential([self.a, self.b])",), keras=True)),
        Example(model_src(("self.body = nn.Sequential(*layers)",)),
                model_src(("self.body = keras.Sequential(layers)",), keras=True)),
        Example(model_src(("self.body = nn.Sequential(OrderedDict([('a', self.a), ('b', self.b)]))",)),
                model_src(("self.body = keras.Sequential([self.a, self.b])",), keras=True)),
    )

    def seq(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        args = node.args
        if not args:
            return call("keras.layers.Identity")  # an empty keras.Sequential cannot be called; torch's is identity
        if any(a.keyword is not None or a.star == "**" for a in args):
            self.todo("keyword arguments to nn.Sequential")
            return None
        if len(args) == 1 and args[0].star == "*":
            return call("keras.Sequential", arg(args[0].value))
        if len(args) == 1 and isinstance(args[0].value, cst.Call) and _is_ordered_dict(args[0].value):
            items = _ordered_dict_values(args[0].value)
            if items is None:
                self.todo("nn.Sequential(OrderedDict(...)) with non-literal items")
                return None
            return call("keras.Sequential", arg(list_of(items)))
        # Keep the user's line breaks and comments: each argument's comma (and what follows it) moves into the list.
        elements = [
            cst.StarredElement(a.value, comma=a.comma) if a.star == "*" else cst.Element(a.value, comma=a.comma)
            for a in args
        ]
        listing = cst.List(elements, lbracket=cst.LeftSquareBracket(whitespace_after=node.whitespace_before_args))
        return cst.Call(func=expr("keras.Sequential"), args=[cst.Arg(listing)])


def _is_ordered_dict(node: cst.Call) -> bool:
    func = node.func
    return (isinstance(func, cst.Name) and func.value == "OrderedDict") or (
        isinstance(func, cst.Attribute) and func.attr.value == "OrderedDict"
    )


def _ordered_dict_values(node: cst.Call) -> list[cst.BaseExpression] | None:
    if all(a.keyword is not None for a in node.args) and node.args:
        return [a.value for a in node.args]
    if len(node.args) != 1 or not isinstance(node.args[0].value, (cst.List, cst.Tuple)):
        return None
    values = []
    for el in node.args[0].value.elements:
        pair = el.value
        if not isinstance(pair, cst.Tuple) or len(pair.elements) != 2:
            return None
        values.append(pair.elements[1].value)
    return values
