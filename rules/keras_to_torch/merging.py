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
_FUNCTIONS = {"add": "Add", "subtract": "Subtract", "multiply": "Multiply", "average": "Average",
              "concatenate": "Concatenate"}


class MergingRule(KerasCallRule):
    id = "merging"
    description = ("layers.Add()([a, b]) -> a + b, Subtract/Multiply likewise, Average -> (a + b) / 2, "
                   "Concatenate(axis)([a, b]) -> torch.cat([a, b], dim=<axis remapped to NCHW>); the functions layers.add([a, b]) "
                   "/ concatenate([a, b], axis) likewise")
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
        if not self.ctx.in_tensor_code():
            return updated_node
        if isinstance(inner, (cst.Name, cst.Attribute)):
            # the functional spellings: layers.add([a, b]), layers.concatenate([a, b], axis=-1)
            qname = self.ctx.qualified_name(inner) or ""
            short = qname.rsplit(".", 1)[-1]
            if not qname.startswith("keras.layers.") or short not in _FUNCTIONS:
                return updated_node
            name = _FUNCTIONS[short]
            tensors = [a for a in updated_node.args if a.keyword is None or a.keyword.value == "inputs"][:1]
            rest = [a for a in original_node.args if a.keyword is not None and a.keyword.value != "inputs"]
            inner = original_node.with_changes(func=inner, args=rest)  # the layer's own arguments (axis=...)
            updated_node = updated_node.with_changes(args=tensors)
        elif isinstance(inner, cst.Call):
            name = (self.ctx.qualified_name(inner.func) or "").rsplit(".", 1)[-1]
            if name not in (*_OPS, "Average", "Concatenate") or not (self.ctx.qualified_name(inner.func) or "").startswith("keras."):
                return updated_node
        else:
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
