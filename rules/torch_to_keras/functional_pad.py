"""F.pad(x, (l, r, t, b), mode, value) -> keras.ops.pad(x, per-axis pairs) for (N, C, *spatial) tensors.

torch lists pad pairs from the last axis backwards; keras.ops.pad wants one pair per axis. The rank is taken
as 2 + number of pairs (batch and channel axes unpadded), the usual image case; the channel axis sits last in
channels_last image models.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, list_of, literal

_MODES = {"constant": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class FunctionalPadRule(CallRule):
    id = "functional-pad"
    description = ("F.pad(x, (l, r, t, b), mode='constant'|'reflect'|'replicate'|'circular', value) -> keras.ops.pad"
                   "(x, [[0, 0], [0, 0], [t, b], [l, r]], mode=...) (rank assumed 2 + pairs)")
    TARGETS = {"torch.nn.functional.pad": "pad"}
    SCOPE = "tensor"
    EXAMPLES = (
        Example(model_src(forward=("return F.pad(x, (1, 2, 3, 4))",)),
                model_src(forward=("return keras.ops.pad(x, [[0, 0], [0, 0], [3, 4], [1, 2]])",), keras=True)),
        Example(model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("return F.pad(x, [dx // 2, dx - dx // 2], mode='reflect')",)),
                model_src(("self.conv = nn.Conv2d(3, 3, 1)",),
                          ('return keras.ops.pad(x, [[0, 0], [dx // 2, dx - dx // 2], [0, 0]], mode="reflect")',),
                          keras=True), layout="channels_last"),
    )

    def pad(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "pad", "mode", "value"])
        widths = a["pad"]
        if not isinstance(widths, (cst.List, cst.Tuple)) or len(widths.elements) % 2 or not widths.elements:
            self.todo("F.pad needs a literal list/tuple of (before, after) pairs")
            return None
        mode = literal(a["mode"], "?") if "mode" in a else "constant"
        if mode not in _MODES:
            self.todo(f"F.pad mode={mode!r} is not translated")
            return None
        values = [e.value for e in widths.elements]
        pairs = [list_of([values[i], values[i + 1]]) for i in range(0, len(values), 2)][::-1]
        zero = list_of([lit(0), lit(0)])
        if self.ctx.remaps_dims():
            full = [zero, *pairs, zero]
        else:
            full = [zero, zero, *pairs]
        args = [arg(a["input"]), arg(list_of(full))]
        if mode != "constant":
            args.append(arg(_MODES[mode], "mode"))
        elif "value" in a and literal(a["value"], None) not in (0, 0.0, None):
            args.append(arg(a["value"], "constant_values"))
        return call("keras.ops.pad", *args)
