"""nn.ReflectionPad1d/2d, nn.ZeroPad1d/2d, nn.ConstantPad1d/2d -> a Keras layer padding the spatial axes.

Zero padding is ``keras.layers.ZeroPadding{n}D`` (torch's ``(left, right, top, bottom)`` becomes Keras' per-axis
``((top, bottom), (left, right))``); reflection and constant padding have no Keras layer, so they become a
weightless ``keras.layers.Lambda`` around ``keras.ops.pad`` (``mode="reflect"`` / ``constant_values``).
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, code, expr, literal, tuple_of


def pad_pairs(padding: cst.BaseExpression, dims: int) -> list[tuple[str, str]] | None:
    """torch padding (an int, or (l, r[, t, b])) -> (before, after) source text per spatial axis, first axis first."""
    value = literal(padding, None)
    if isinstance(padding, (cst.Tuple, cst.List)):
        items = [code(e.value) for e in padding.elements]
        if len(items) != 2 * dims:
            return None
        pairs = [(items[i], items[i + 1]) for i in range(0, len(items), 2)]
        return pairs[::-1]
    if isinstance(value, tuple):
        return None
    text = code(padding)
    return [(text, text)] * dims


def full_pad_width(pairs: list[tuple[str, str]], layout: str) -> str:
    axes = [f"[{b}, {a}]" for b, a in pairs]
    full = ["[0, 0]", *axes, "[0, 0]"] if layout == "channels_last" else ["[0, 0]", "[0, 0]", *axes]
    return "[" + ", ".join(full) + "]"


class PaddingLayersRule(CallRule):
    id = "padding-layers"
    description = ("nn.ZeroPad1d/2d -> keras.layers.ZeroPadding{n}D; nn.ReflectionPad1d/2d and nn.ConstantPad1d/2d -> "
                   "keras.layers.Lambda(keras.ops.pad(..., mode='reflect' | constant_values=v)) on the spatial axes")
    TARGETS = {
        **{f"torch.nn.ReflectionPad{n}d": "reflect" for n in (1, 2)},
        **{f"torch.nn.ZeroPad{n}d": "zero" for n in (1, 2)},
        **{f"torch.nn.ConstantPad{n}d": "constant" for n in (1, 2)},
    }
    EXAMPLES = (
        Example(model_src(("self.pad = nn.ReflectionPad2d(1)",)),
                model_src(('self.pad = keras.layers.Lambda(lambda t: keras.ops.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], '
                           'mode="reflect"))',), keras=True), layout="channels_last"),
        Example(model_src(("self.pad = nn.ZeroPad2d((1, 2, 0, 1))",)),
                model_src(("self.pad = keras.layers.ZeroPadding2D(((0, 1), (1, 2)))",), keras=True),
                layout="channels_last"),
    )

    def _pairs(self, node: cst.Call, name: str, params: list[str]) -> tuple[dict[str, cst.BaseExpression], list[tuple[str, str]]] | None:
        a = bind_args(node, params)
        pairs = pad_pairs(a["padding"], int(name[-2]))
        if pairs is None:
            self.todo("padding must be an int or a literal (left, right[, top, bottom]) tuple")
        return None if pairs is None else (a, pairs)

    def reflect(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        found = self._pairs(node, name, ["padding"])
        if found is None:
            return None
        width = full_pad_width(found[1], self.ctx.layout)
        return expr(f'keras.layers.Lambda(lambda t: keras.ops.pad(t, {width}, mode="reflect"))')

    def constant(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        found = self._pairs(node, name, ["padding", "value"])
        if found is None:
            return None
        a, pairs = found
        width = full_pad_width(pairs, self.ctx.layout)
        return expr(f"keras.layers.Lambda(lambda t: keras.ops.pad(t, {width}, constant_values={code(a['value'])}))")

    def zero(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        found = self._pairs(node, name, ["padding"])
        if found is None:
            return None
        a, pairs = found
        dims = int(name[-2])
        if isinstance(a["padding"], (cst.Tuple, cst.List)):
            value: cst.BaseExpression = tuple_of([expr(f"({b}, {e})") for b, e in pairs]) if dims == 2 else expr(
                f"({pairs[0][0]}, {pairs[0][1]})")
        else:
            value = a["padding"]
        return call(f"keras.layers.ZeroPadding{dims}D", arg(value), *self.data_format())
