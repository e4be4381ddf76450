"""nn.InstanceNorm1d/2d(C) -> keras.layers.GroupNormalization(groups=C): one group per channel is instance norm.

torch's InstanceNorm defaults to ``affine=False`` and ``track_running_stats=False`` (statistics of each sample,
also at inference): that is GroupNormalization with ``center``/``scale`` off. Running statistics have no Keras
equivalent and are marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, lit, literal


class InstanceNormRule(CallRule):
    id = "instance-norm"
    description = ("nn.InstanceNorm1d/2d(C, eps, affine) -> keras.layers.GroupNormalization(groups=C, axis=<channels>, "
                   "epsilon=eps, center=affine, scale=affine); track_running_stats=True is marked")
    TARGETS = {f"torch.nn.InstanceNorm{n}d": "norm" for n in (1, 2, 3)}
    EXAMPLES = (
        Example(model_src(("self.norm = nn.InstanceNorm2d(16, affine=True)",)),
                model_src(("self.norm = keras.layers.GroupNormalization(groups=16, axis=-1, epsilon=1e-05)",),
                          keras=True), layout="channels_last"),
        Example(model_src(("self.norm = nn.InstanceNorm2d(16)",)),
                model_src(("self.norm = keras.layers.GroupNormalization(groups=16, axis=-1, epsilon=1e-05, center=False, "
                           "scale=False)",), keras=True), layout="channels_last"),
    )

    def norm(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["num_features", "eps", "momentum", "affine", "track_running_stats", "device", "dtype"])
        if "track_running_stats" in a and literal(a["track_running_stats"], None) is not False:
            self.todo("track_running_stats=True (running statistics at inference) has no Keras equivalent")
            return None
        affine = literal(a["affine"], "?") if "affine" in a else False
        if affine not in (True, False):
            self.todo("a non-literal affine flag")
            return None
        args = [arg(a["num_features"], "groups"), arg(self.channel_axis(), "axis"), arg(a.get("eps", lit(1e-5)), "epsilon")]
        if affine is False:
            args += [arg(False, "center"), arg(False, "scale")]
        return call("keras.layers.GroupNormalization", *args)
