"""layers.BatchNormalization -> nn.BatchNorm1d/2d with Keras' eps and momentum written out (momentum = 1 - m)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, lit, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src


class BatchNormRule(KerasCallRule):
    id = "batchnorm"
    description = ("layers.BatchNormalization(axis=-1, momentum=0.99, epsilon=1e-3) -> nn.BatchNorm{1,2,3}d(C, "
                   "eps=0.001, momentum=0.01) (rank and C from --input-shape; without it nn.LazyBatchNorm2d in "
                   "conv models, marked elsewhere)")
    TARGETS = {"keras.layers.BatchNormalization": "bn"}
    EXAMPLES = (
        Example(keras_src(("self.conv = layers.Conv2D(4, 3)", "self.bn = layers.BatchNormalization()")),
                keras_src(("self.conv = layers.Conv2D(4, 3)",
                           "self.bn = nn.LazyBatchNorm2d(eps=0.001, momentum=0.01)"), torch=True)),
        Example(keras_src(("self.bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)",)),
                keras_src(("# crossport: TODO(batchnorm): BatchNormalization input rank unknown (1d or 2d); pass "
                           "--input-shape",
                           "self.bn = layers.BatchNormalization(momentum=0.9, epsilon=1e-5)"))),
    )

    def bn(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["axis", "momentum", "epsilon", "center", "scale"])
        if literal(a.get("axis"), -1) not in (-1,):
            self.todo("BatchNormalization over an axis other than the channels (-1)")
            return None
        center, scale = self.flag(a, "center", True), self.flag(a, "scale", True)
        if center != scale or center not in (True, False):
            self.todo("center != scale: torch's affine flag sets both")
            return None
        momentum = literal(a.get("momentum"), "?") if "momentum" in a else 0.99
        eps = a.get("epsilon", lit(0.001))
        if not isinstance(momentum, (int, float)):
            self.todo("non-literal momentum")
            return None
        shape = self.input_shape()
        tail = [arg(eps, "eps"), arg(lit(round(1 - momentum, 10)), "momentum")]
        if center is False:
            tail.append(arg(cst.Name("False"), "affine"))
        if shape is None:
            if not self.spatial():
                self.todo("BatchNormalization input rank unknown (1d or 2d); pass --input-shape")
                return None
            info = self.ctx.current_model()
            dims = 1 if info is not None and info.ranks == {3} else 2  # Conv1D models: (N, C, L) sequences
            return call(f"nn.LazyBatchNorm{dims}d", *tail)
        rank = len(shape)
        if rank >= 3 and not self.spatial():
            # No conv/pool layer makes this a channels-first model: the tensor stays channels-last in torch.
            self.todo(f"BatchNormalization on rank-{rank} channels-last tensors in a model without conv layers: "
                      "torch's BatchNorm normalizes dim 1")
            return None
        dims = {2: 1, 3: 1, 4: 2, 5: 3}.get(rank)
        if dims is None:
            self.todo(f"BatchNormalization on rank-{rank} input")
            return None
        return call(f"nn.BatchNorm{dims}d", arg(shape[-1]), *tail)
