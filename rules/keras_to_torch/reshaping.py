"""layers.Reshape / Permute -> x.reshape / x.permute where applied; only on non-image tensors (or to a vector).

Keras reshapes channels-last data; on NCHW tensors the same element order needs a permute first, which this rule
does not guess: image reshapes are marked.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import call, code, literal, expr
from rules.keras_to_torch._base import KerasCallRule, keras_src


class ReshapingRule(KerasCallRule):
    id = "reshaping"
    description = ("layers.Reshape(shape)(x) -> x.reshape(x.shape[0], *shape) and layers.Permute(dims)(x) -> "
                   "x.permute(0, *dims) on non-image tensors; Reshape((-1,)) anywhere -> nn.Flatten()")
    TARGETS = {"keras.layers.Reshape": "module", "keras.layers.Permute": "module"}
    order = 40
    EXAMPLES = (
        Example(keras_src((), ("y = layers.Reshape((4, 8))(x)", "return layers.Permute((2, 1))(y)")),
                keras_src((), ("y = x.reshape(x.shape[0], 4, 8)", "return y.permute(0, 2, 1)"))),
        Example(keras_src(("self.flat = layers.Reshape((-1,))",)), keras_src(("self.flat = nn.Flatten()",), torch=True)),
    )

    def module(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        target = literal(node.args[0].value, None) if node.args else None
        if name.endswith("Reshape") and isinstance(target, tuple) and len(target) == 1 and target[0] == -1:
            return call("nn.Flatten")
        if self.ctx.in_tensor_code():
            return None  # applied where tensors flow: written inline by leave_Call
        self.todo(f"{name.rsplit('.', 1)[-1]} held as a module: apply it inline (torch has no module for it)")
        return None

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        inner = original_node.func
        if isinstance(inner, cst.Call) and self.ctx.in_tensor_code() and len(updated_node.args) == 1:
            name = self.ctx.qualified_name(inner.func) or ""
            if name in self.TARGETS:
                return self._inline(inner, name, updated_node.args[0].value, updated_node)
        return super().leave_Call(original_node, updated_node)

    def _inline(self, inner: cst.Call, name: str, x: cst.BaseExpression, node: cst.Call) -> cst.BaseExpression:
        target = literal(inner.args[0].value, None) if inner.args else None
        if not isinstance(target, tuple) or not all(isinstance(v, int) for v in target):
            self.todo(f"{name.rsplit('.', 1)[-1]} with a non-literal shape")
            return node
        if len(target) == 1 and target[0] == -1:
            return expr(f"{_atom(x)}.flatten(1)")
        if self.spatial():
            self.todo(f"{name.rsplit('.', 1)[-1]} of a channels-last image: torch's NCHW element order differs")
            return node
        text = _atom(x)
        if name.endswith("Reshape"):
            return expr(f"{text}.reshape({text}.shape[0], {', '.join(map(str, target))})")
        return expr(f"{text}.permute(0, {', '.join(map(str, target))})")


def _atom(x: cst.BaseExpression) -> str:
    text = code(x)
    return text if isinstance(x, (cst.Name, cst.Attribute, cst.Call, cst.Subscript)) else f"({text})"
