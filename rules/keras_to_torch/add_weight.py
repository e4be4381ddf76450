"""self.add_weight(shape, initializer, trainable) in __init__ -> nn.Parameter(<torch init of that shape>).

A custom weight is copied as stored by the weight transfer (no transpose), so the shape stays as written.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import code, literal, expr
from rules.keras_to_torch._base import KerasCallRule, keras_src

_INITS = {"zeros": "torch.zeros({shape})", "ones": "torch.ones({shape})",
          "glorot_uniform": "nn.init.xavier_uniform_(torch.empty({shape}))",
          "glorot_normal": "nn.init.xavier_normal_(torch.empty({shape}))",
          "he_normal": "nn.init.kaiming_normal_(torch.empty({shape}))",
          "he_uniform": "nn.init.kaiming_uniform_(torch.empty({shape}))",
          "random_normal": "torch.randn({shape}) * 0.05", "random_uniform": "torch.rand({shape}) * 0.1 - 0.05"}


class AddWeightRule(KerasCallRule):
    id = "add-weight"
    description = ("self.add_weight(shape=..., initializer=..., trainable=...) in __init__ -> nn.Parameter(torch "
                   "initializer of that shape, requires_grad=trainable); add_weight in build() is marked")
    TARGETS = {}
    NEEDS = ("torch", "torch.nn")
    EXAMPLES = (
        Example(keras_src(('self.scale = self.add_weight(shape=(4,), initializer="ones", name="scale")',)),
                keras_src(("self.scale = nn.Parameter(torch.ones((4,)))",), head="import torch\nimport torch.nn as nn\n",
                          torch=True)),
        Example(keras_src(("self.w = self.add_weight(shape=(2, 3), trainable=False)",)),
                keras_src(("self.w = nn.Parameter(nn.init.xavier_uniform_(torch.empty((2, 3))), requires_grad=False)",),
                          head="import torch\nimport torch.nn as nn\n", torch=True)),
    )

    def _initial(self, init: cst.BaseExpression | None, shape: str) -> str | None:
        """torch source creating the initial value; Keras initializer objects with literal arguments too."""
        if init is None:
            return _INITS["glorot_uniform"].format(shape=shape)
        name = literal(init, None)
        if isinstance(name, str):
            return _INITS[name].format(shape=shape) if name in _INITS else None
        if not isinstance(init, cst.Call):
            return None
        q = (self.ctx.qualified_name(init.func) or "").rsplit(".", 1)[-1]
        kw = {a.keyword.value: literal(a.value, None) for a in init.args if a.keyword is not None}
        if len(kw) != len(init.args):
            return None
        if q == "RandomNormal":
            return f"torch.randn({shape}) * {kw.get('stddev', 0.05)} + {kw.get('mean', 0.0)}"
        if q == "Constant" and isinstance(kw.get("value"), (int, float)):
            return f"torch.full({shape}, {kw['value']})"
        snake = {"Zeros": "zeros", "Ones": "ones", "GlorotUniform": "glorot_uniform", "GlorotNormal": "glorot_normal",
                 "HeNormal": "he_normal", "HeUniform": "he_uniform"}.get(q)
        return _INITS[snake].format(shape=shape) if snake and not kw else None

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = updated_node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "add_weight" and isinstance(func.value, cst.Name)
                and func.value.value == "self" and self.ctx.current_class() is not None):
            return updated_node
        if self.ctx.current_function() != "__init__":
            self.todo("add_weight outside __init__: torch parameters are created in __init__")
            return updated_node
        a = {arg.keyword.value: arg.value for arg in updated_node.args if arg.keyword is not None}
        if "shape" not in a or len(a) != len(updated_node.args):
            self.todo("add_weight without a keyword shape=")
            return updated_node
        value = self._initial(a.get("initializer"), code(a["shape"]))
        if value is None:
            self.todo(f"add_weight initializer {code(a['initializer'])} has no torch equivalent here")
            return updated_node
        trainable = literal(a.get("trainable"), "?") if "trainable" in a else True
        if trainable not in (True, False):
            self.todo("non-literal trainable")
            return updated_node
        self.add_imports()
        tail = "" if trainable else ", requires_grad=False"
        return expr(f"nn.Parameter({value}{tail})")
