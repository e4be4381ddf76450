"""layers.Add / Subtract / Multiply / Average / Concatenate applied to tensors -> arithmetic / torch.cat.

Merge layers have no weights and no torch module: ``layers.Add()([a, b])`` becomes ``a + b`` where it is applied
(functional API, or inside call); ``Concatenate(axis=-1)`` concatenates channels, torch's ``dim=1`` on NCHW.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import code, literal, expr
from rules.keras_to_torch._base import KerasCallRule, keras_src

_OPS = {"Add": " + ", "Subtract": " - ", "Multiply": " * "}


class MergingRule(KerasCallRule):
    id = "merging"
    description = ("layers.Add()([a, b]) -> a + b, Subtract/Multiply likewise, Average -> (a + b) / 2, "
                   "Concatenate(axis)([a, b]) -> torch.cat([a, b], dim=<axis remapped to NCHW>)")
    TARGETS = {}
    order = 40
    EXAMPLES = (
        Example(keras_src(("self.conv = layers.Conv2D(4, 3)",), ("y = layers.Add()([x, x])",
                                                                 "return layers.Concatenate()([x, y])")),
                keras_src(("self.conv = layers.Conv2D(4, 3)",), ("y = x + x", "return torch.cat([x, y], dim=1)"),
                          head="import torch\n", torch=True)),
    )

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        inner = original_node.func
        if not (isinstance(inner, cst.Call) and self.ctx.in_tensor_code()):
            return updated_node
        name = (self.ctx.qualified_name(inner.func) or "").rsplit(".", 1)[-1]
        if name not in (*_OPS, "Average", "Concatenate") or not self.ctx.qualified_name(inner.func).startswith("keras."):  # type: ignore[union-attr]
            return updated_node
        if len(updated_node.args) != 1 or not isinstance(updated_node.args[0].value, (cst.List, cst.Tuple)):
            self.todo(f"{name} applied to something other than a literal list of tensors")
            return updated_node
        items = [code(e.value) for e in updated_node.args[0].value.elements]
        if name in _OPS:
            return expr(_OPS[name].join(items))
        if name == "Average":
            return expr(f"({' + '.join(items)}) / {len(items)}")
        axis_node = next((a.value for a in inner.args if a.keyword is None or a.keyword.value == "axis"), None)
        axis = literal(axis_node, "?") if axis_node is not None else -1
        self._original = inner
        shape = self.input_shape()
        dim = self.torch_dim(axis, len(shape) if shape else None)
        if dim is None:
            self.todo(f"Concatenate(axis={axis}): the matching NCHW dim needs the tensor rank; pass --input-shape")
            return updated_node
        self.ctx.add_import("torch")
        return expr(f"torch.cat([{', '.join(items)}], dim={dim})")
