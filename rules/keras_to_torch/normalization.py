"""layers.LayerNormalization / GroupNormalization -> nn.LayerNorm / nn.GroupNorm with Keras' epsilon (1e-3)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, lit, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src


class NormalizationRule(KerasCallRule):
    id = "normalization"
    description = ("layers.LayerNormalization(epsilon=1e-3) -> nn.LayerNorm(C, eps=0.001) on the last axis of "
                   "non-image tensors; layers.GroupNormalization(groups=32) -> nn.GroupNorm(32, C, eps=0.001); "
                   "C from --input-shape (torch has no lazy norms)")
    TARGETS = {"keras.layers.LayerNormalization": "layer_norm", "keras.layers.GroupNormalization": "group_norm"}
    EXAMPLES = (
        Example(keras_src(("self.norm = layers.LayerNormalization()",)),
                keras_src(("# crossport: TODO(normalization): LayerNormalization needs the feature size; pass "
                           "--input-shape",
                           "self.norm = layers.LayerNormalization()"))),
    )

    def _affine(self, a: dict[str, cst.BaseExpression], key: str) -> list[cst.Arg] | None:
        center, scale = self.flag(a, "center", True), self.flag(a, "scale", True)
        if center != scale or center not in (True, False):
            self.todo("center != scale: torch's affine flag sets both")
            return None
        return [] if center else [arg(cst.Name("False"), key)]

    def layer_norm(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["axis", "epsilon", "center", "scale", "rms_scaling", "beta_initializer"])
        if literal(a.get("axis"), -1) != -1 or self.flag(a, "rms_scaling", False) is not False:
            self.todo("LayerNormalization over axes other than the last (or rms_scaling)")
            return None
        shape = self.input_shape()
        if shape is None or not isinstance(shape[-1], int):
            self.todo("LayerNormalization needs the feature size; pass --input-shape")
            return None
        if self.spatial() and len(shape) > 2:
            self.todo("LayerNormalization over the channels of an image: NCHW normalizes dim 1, not the last dim")
            return None
        affine = self._affine(a, "elementwise_affine")
        if affine is None:
            return None
        return call("nn.LayerNorm", arg(shape[-1]), arg(a.get("epsilon", lit(0.001)), "eps"), *affine)

    def group_norm(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["groups", "axis", "epsilon", "center", "scale"])
        if literal(a.get("axis"), -1) != -1:
            self.todo("GroupNormalization over an axis other than the channels")
            return None
        channels = self.in_size()
        if channels is None:
            self.todo("GroupNormalization needs the channel count; pass --input-shape")
            return None
        affine = self._affine(a, "affine")
        if affine is None:
            return None
        return call("nn.GroupNorm", arg(a.get("groups", lit(32))), arg(channels),
                    arg(a.get("epsilon", lit(0.001)), "eps"), *affine)
