"""keras.Sequential([...]) -> nn.Sequential(...); model.add(layer) -> model.append(layer).

``keras.Input`` entries are dropped (torch modules take no input declaration); a layer whose fused activation
became ``nn.Sequential(layer, act)`` is spliced into the list. Weights map by position among weighted layers.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import code, expr
from rules.keras_to_torch._base import ACTIVATION_MODULES, KerasCallRule

_BEFORE = ("import keras\nfrom keras import layers\n\n\ndef build_model():\n"
           "    return keras.Sequential([\n        keras.Input(shape=(8,)),\n"
           "        nn.Sequential(nn.LazyLinear(4), nn.ReLU()),  # hidden\n        nn.LazyLinear(2),\n    ], name=\"mlp\")\n")


class SequentialRule(KerasCallRule):
    id = "sequential"
    description = ("keras.Sequential([...]) -> nn.Sequential(...) (keras.Input dropped, fused activations spliced "
                   "in); model.add(layer) -> model.append(layer)")
    TARGETS = {"keras.Sequential": "sequential"}
    order = 55
    EXAMPLES = (
        Example(_BEFORE, "import keras\nfrom keras import layers\nimport torch.nn as nn\n\n\ndef build_model():\n"
                "    return nn.Sequential(\n        nn.LazyLinear(4),\n        nn.ReLU(),  # hidden\n"
                "        nn.LazyLinear(2),\n    )\n"),
        Example("import keras\n\n\ndef build(blocks):\n    return keras.Sequential(blocks)\n",
                "import keras\nimport torch.nn as nn\n\n\ndef build(blocks):\n    return nn.Sequential(*blocks)\n"),
    )

    def sequential(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        original = self._original
        assert original is not None
        positional = [a for a in node.args if a.keyword is None]
        if any(a.keyword is not None and a.keyword.value not in ("name", "trainable") for a in node.args):
            self.todo("keras.Sequential keyword arguments other than name")
            return None
        if not positional:
            return expr("nn.Sequential()")
        listing, orig_listing = positional[0].value, original.args[0].value
        if not isinstance(listing, (cst.List, cst.Tuple)) or not isinstance(orig_listing, (cst.List, cst.Tuple)):
            # keras.Sequential(blocks) -> nn.Sequential(*blocks): a list built by the code (its Keras layers are
            # rewritten where they are created)
            return cst.Call(func=expr("nn.Sequential"), args=[cst.Arg(listing, star="*")])
        kept = [e for e, o in zip(listing.elements, orig_listing.elements)
                if not (isinstance(o.value, cst.Call) and self.ctx.qualified_name(o.value.func) == "keras.Input")]
        if not kept:
            return expr("nn.Sequential()")
        return _layout(original, listing, [piece for e in kept for piece in _splice(e)])

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.BaseStatement | cst.RemovalSentinel:
        """``model.add(keras.Input(shape))`` / ``model.add(layers.InputLayer(...))``: torch declares no input."""
        small = original_node.body[0] if len(original_node.body) == 1 else None
        if not (self.ctx.in_model_scope() and isinstance(small, cst.Expr) and isinstance(small.value, cst.Call)):
            return updated_node
        func, args = small.value.func, small.value.args
        if (isinstance(func, cst.Attribute) and func.attr.value == "add" and len(args) == 1
                and isinstance(args[0].value, cst.Call)
                and self.ctx.qualified_name(args[0].value.func) in ("keras.Input", "keras.layers.InputLayer")):
            return cst.RemovalSentinel.REMOVE
        return updated_node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = updated_node.func
        if (isinstance(func, cst.Attribute) and func.attr.value == "add" and len(original_node.args) == 1
                and self.ctx.in_model_scope() and isinstance(original_node.args[0].value, cst.Call)
                and id(original_node.args[0].value) in self.ctx.analysis.sites):
            return updated_node.with_changes(func=func.with_changes(attr=cst.Name("append")))
        return super().leave_Call(original_node, updated_node)


def _splice(element: cst.BaseElement) -> list[tuple[cst.BaseExpression, cst.Comma | None]]:
    """(value, the element's own comma) pieces; ``nn.Sequential(layer, act)`` from a fused activation -> two."""
    value = element.value
    comma = element.comma if isinstance(element.comma, cst.Comma) else None
    if (isinstance(value, cst.Call) and code(value.func) == "nn.Sequential" and len(value.args) == 2
            and isinstance(value.args[1].value, cst.Call) and code(value.args[1].value.func) in ACTIVATION_MODULES):
        return [(value.args[0].value, None), (value.args[1].value, comma)]
    return [(value, comma)]


def _no_comment(space: cst.BaseParenthesizableWhitespace) -> cst.BaseParenthesizableWhitespace:
    if isinstance(space, cst.ParenthesizedWhitespace):
        return space.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=[])
    return space


def _layout(call: cst.Call, listing: cst.List | cst.Tuple,
            pieces: list[tuple[cst.BaseExpression, cst.Comma | None]]) -> cst.Call:
    """nn.Sequential(...) laid out like the user's list: one entry per line (comments kept) or all on one line."""
    func = expr("nn.Sequential")
    first_space = listing.lbracket.whitespace_after if isinstance(listing, cst.List) else None
    if not isinstance(first_space, cst.ParenthesizedWhitespace):
        args = [cst.Arg(v, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) for v, _ in pieces]
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return cst.Call(func=func, args=args)
    closing = listing.rbracket.whitespace_before  # type: ignore[union-attr]
    if isinstance(call.whitespace_before_args, cst.ParenthesizedWhitespace):
        # keras.Sequential(\n    [\n        a,\n    ]\n): entries move up to where the bracket was.
        indent = call.whitespace_before_args.last_line
        first_space = first_space.with_changes(last_line=indent)
        last = call.args[-1]
        closing = last.comma.whitespace_after if isinstance(last.comma, cst.Comma) else last.whitespace_after_arg
    sep = _no_comment(first_space)
    args = []
    for i, (value, comma) in enumerate(pieces):
        space = comma.whitespace_after if comma is not None else sep
        if isinstance(space, cst.ParenthesizedWhitespace) and isinstance(sep, cst.ParenthesizedWhitespace):
            space = space.with_changes(last_line=sep.last_line)
        if i == len(pieces) - 1:
            if isinstance(space, cst.ParenthesizedWhitespace) and isinstance(closing, cst.ParenthesizedWhitespace):
                space = space.with_changes(last_line=closing.last_line)
            else:
                space = closing
        elif not isinstance(space, cst.ParenthesizedWhitespace):
            space = sep
        args.append(cst.Arg(value, comma=cst.Comma(whitespace_after=space)))
    return cst.Call(func=func, args=args, whitespace_before_args=first_space)
