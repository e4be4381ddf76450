"""nn.BatchNorm1d/2d/3d (+Lazy) -> keras.layers.BatchNormalization with epsilon and momentum written out.

Keras defaults differ (epsilon 1e-3 vs 1e-5; momentum is 1 - torch momentum), so both are always explicit.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, expr, lit, literal, code

_PARAMS = ["num_features", "eps", "momentum", "affine", "track_running_stats", "device", "dtype"]


class BatchNormRule(CallRule):
    id = "batchnorm"
    description = ("nn.BatchNorm1d/2d/3d and nn.LazyBatchNorm* -> keras.layers.BatchNormalization(axis, epsilon=eps, "
                   "momentum=1-m) with both defaults written explicitly")
    TARGETS = {
        **{f"torch.nn.BatchNorm{n}d": "bn" for n in (1, 2, 3)},
        **{f"torch.nn.LazyBatchNorm{n}d": "lazy" for n in (1, 2, 3)},
    }
    EXAMPLES = (
        Example(model_src(("self.bn = nn.BatchNorm2d(16)",)),
                model_src(("self.bn = keras.layers.BatchNormalization(axis=1, epsilon=1e-05, momentum=0.9)",), keras=True)),
        Example(model_src(("self.bn = nn.BatchNorm1d(8, eps=1e-3, momentum=0.01, affine=False)",)),
                model_src(("self.bn = keras.layers.BatchNormalization(axis=-1, epsilon=1e-3, momentum=0.99, "
                           "center=False, scale=False)",), keras=True), layout="channels_last"),
        Example(model_src(("self.bn = nn.BatchNorm2d(16, momentum=None)",)),
                model_src(("# crossport: TODO(batchnorm): momentum=None (cumulative average) has no Keras equivalent",
                           "self.bn = nn.BatchNorm2d(16, momentum=None)"))),
    )

    def bn(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._build(bind_args(node, _PARAMS))

    def lazy(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return self._build(bind_args(node, _PARAMS[1:]))

    def _build(self, a: dict[str, cst.BaseExpression]) -> cst.BaseExpression | None:
        if "track_running_stats" in a and literal(a["track_running_stats"], None) is not True:
            self.todo("track_running_stats=False (batch statistics at inference) has no Keras equivalent")
            return None
        momentum = literal(a["momentum"], "?") if "momentum" in a else 0.1
        if momentum is None:
            self.todo("momentum=None (cumulative average) has no Keras equivalent")
            return None
        eps = a.get("eps", lit(1e-5))
        if isinstance(momentum, (int, float)) and not isinstance(momentum, bool):
            keras_m: cst.BaseExpression = lit(round(1.0 - momentum, 12))
        else:
            keras_m = expr(f"1 - ({code(a['momentum'])})")
        args = [arg(self.channel_axis(), "axis"), arg(eps, "epsilon"), arg(keras_m, "momentum")]
        if "affine" in a and literal(a["affine"], None) is not True:
            args += [arg(a["affine"], "center"), arg(a["affine"], "scale")]
        return call("keras.layers.BatchNormalization", *args)
