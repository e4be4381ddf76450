"""nn.MaxPool1d/2d and nn.AvgPool1d/2d -> keras.layers.{Max,Average}Pooling{1,2}D with exact padding."""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, expr, list_of, literal, pad_pair

_MAX = ["kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"]
_AVG = ["kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"]


class PoolingRule(CallRule):
    id = "pooling"
    description = ("nn.MaxPool1d/2d, nn.AvgPool1d/2d -> keras.layers.MaxPooling/AveragePooling{1,2}D; avg-pool "
                   "padding counted in the mean becomes ZeroPadding + 'valid'; max-pool padding 'same' when exact, else an explicit -inf pad (keras.ops.pad in a Lambda) + 'valid'")
    TARGETS = {
        "torch.nn.MaxPool1d": "max_pool", "torch.nn.MaxPool2d": "max_pool",
        "torch.nn.AvgPool1d": "avg_pool", "torch.nn.AvgPool2d": "avg_pool",
    }
    EXAMPLES = (
        Example(model_src(("self.pool = nn.MaxPool2d(2)",)),
                model_src(('self.pool = keras.layers.MaxPooling2D(2, data_format="channels_first")',), keras=True)),
        Example(model_src(("self.pool = nn.MaxPool2d(kernel_size=3, stride=1, padding=1)",)),
                model_src(('self.pool = keras.layers.MaxPooling2D(3, strides=1, padding="same")',), keras=True),
                layout="channels_last"),
        Example(model_src(("self.pool = nn.AvgPool2d(3, stride=2, padding=1)",)),
                model_src(('self.pool = keras.Sequential([keras.layers.ZeroPadding2D(1), '
                           'keras.layers.AveragePooling2D(3, strides=2)])',), keras=True), layout="channels_last"),
        Example(model_src(("self.pool = nn.MaxPool2d(3, 2, 1)",)),
                model_src(('self.pool = keras.Sequential([keras.layers.Lambda(lambda t: keras.ops.pad(t, [[0, 0], '
                           '[1, 1], [1, 1], [0, 0]], constant_values=float("-inf"))), keras.layers.MaxPooling2D(3, '
                           'strides=2)])',), keras=True), layout="channels_last"),
    )

    def _common(self, a: dict[str, cst.BaseExpression], kind: str, dims: int, plan: str) -> cst.Call:
        args = [arg(a["kernel_size"])]
        if "stride" in a and literal(a["stride"], 0) is not None:
            args.append(arg(a["stride"], "strides"))
        if plan == "same":
            args.append(arg("same", "padding"))
        return call(f"keras.layers.{kind}Pooling{dims}D", *args, *self.data_format())

    def _same_exact(self, a: dict[str, cst.BaseExpression], dims: int) -> bool:
        k = pad_pair(literal(a["kernel_size"], None), dims)
        s = pad_pair(literal(a["stride"], None), dims) if "stride" in a and literal(a["stride"], 0) is not None else k
        p = pad_pair(literal(a["padding"], None), dims)
        return bool(k and s and p) and all(si == 1 for si in s) and all(ki == 2 * pi + 1 for ki, pi in zip(k, p))  # type: ignore[arg-type]

    def max_pool(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, _MAX)
        dims = int(name[-2])
        for flag in ("return_indices", "ceil_mode"):
            if flag in a and literal(a[flag], True) is not False:
                self.todo(f"{flag}=True has no Keras equivalent")
                return None
        if "dilation" in a and literal(a["dilation"], None) != 1:
            self.todo("dilated max-pooling has no Keras equivalent")
            return None
        padding = pad_pair(literal(a["padding"], None), dims) if "padding" in a else (0,) * dims
        if padding is None:
            self.todo("padding must be a literal int to decide the exact Keras padding")
            return None
        if all(p == 0 for p in padding):
            return self._common(a, "Max", dims, "valid")
        if self._same_exact(a, dims):
            return self._common(a, "Max", dims, "same")
        # torch pads max pooling with -inf on both sides (the ResNet stem's MaxPool2d(3, 2, 1)); Keras 'same' pads
        # asymmetrically and has no constant-padding layer: pad with -inf explicitly, then pool 'valid'.
        pairs = ", ".join(f"[{p}, {p}]" for p in padding)
        width = f"[[0, 0], {pairs}, [0, 0]]" if self.ctx.layout == "channels_last" else f"[[0, 0], [0, 0], {pairs}]"
        pad = expr(f'keras.layers.Lambda(lambda t: keras.ops.pad(t, {width}, constant_values=float("-inf")))')
        return call("keras.Sequential", arg(list_of([pad, self._common(a, "Max", dims, "valid")])))

    def avg_pool(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, _AVG)
        dims = int(name[-2])
        if "ceil_mode" in a and literal(a["ceil_mode"], True) is not False:
            self.todo("ceil_mode=True has no Keras equivalent")
            return None
        if "divisor_override" in a and literal(a["divisor_override"], 1) is not None:
            self.todo("divisor_override has no Keras equivalent")
            return None
        padding = pad_pair(literal(a["padding"], None), dims) if "padding" in a else (0,) * dims
        if padding is None:
            self.todo("padding must be a literal int to decide the exact Keras padding")
            return None
        if all(p == 0 for p in padding):
            return self._common(a, "Average", dims, "valid")
        include = literal(a["count_include_pad"], None) if "count_include_pad" in a else True
        if include is True:
            pad = call(f"keras.layers.ZeroPadding{dims}D", arg(a["padding"]), *self.data_format())
            return call("keras.Sequential", arg(list_of([pad, self._common(a, "Average", dims, "valid")])))
        if include is False and self._same_exact(a, dims):
            return self._common(a, "Average", dims, "same")
        self.todo("count_include_pad=False with this padding has no exact Keras equivalent")
        return None
