"""layers.GlobalAveragePooling1D/2D, GlobalMaxPooling1D/2D -> adaptive pooling to 1 (+ nn.Flatten).

On a sequence model (no convs: (N, T, C) tensors stay batch-first in torch) the 1-D pools reduce dim 1 inline.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, literal, expr
from rules.keras_to_torch._base import KerasCallRule, keras_src


class GlobalPoolingRule(KerasCallRule):
    id = "global-pooling"
    description = ("layers.GlobalAveragePooling2D/GlobalMaxPooling2D -> nn.Sequential(nn.AdaptiveAvgPool2d(1), "
                   "nn.Flatten()) (keepdims=True: no Flatten); 1-D pools of sequence models -> x.mean(dim=1)")
    order = 40  # before the functional rule hoists the application
    TARGETS = {
        **{f"keras.layers.Global{kind}Pooling{n}D": "pool" for kind in ("Average", "Max") for n in (1, 2, 3)},
        **{f"keras.layers.Global{kind}Pool{n}D": "pool" for kind in ("Avg", "Max") for n in (1, 2, 3)},
    }
    EXAMPLES = (
        Example(keras_src(("self.conv = layers.Conv2D(4, 3)", "self.gap = layers.GlobalAveragePooling2D()")),
                keras_src(("self.conv = layers.Conv2D(4, 3)",
                           "self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())"), torch=True)),
        Example(keras_src(("self.conv = layers.Conv2D(4, 3)", "self.gmp = layers.GlobalMaxPooling2D(keepdims=True)")),
                keras_src(("self.conv = layers.Conv2D(4, 3)", "self.gmp = nn.AdaptiveMaxPool2d(1)"), torch=True)),
    )

    def pool(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        short = name.rsplit(".", 1)[-1]
        dims = int(short[-2])
        is_max = "Max" in short
        a = self.bind(node, ["data_format", "keepdims"])
        keepdims = literal(a.get("keepdims"), "?") if "keepdims" in a else False
        if keepdims not in (True, False):
            self.todo("non-literal keepdims")
            return None
        if not self.spatial():
            if self.ctx.in_tensor_code():
                return None  # applied where tensors flow: leave_Call writes the reduction inline
            self.todo(f"{short} on (N, T, C) sequences: apply it as x.{'amax' if is_max else 'mean'}(dim=1)")
            return None
        pool = call(f"nn.Adaptive{'Max' if is_max else 'Avg'}Pool{dims}d", arg(1))
        return pool if keepdims else call("nn.Sequential", arg(pool), arg(call("nn.Flatten")))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        """``layers.GlobalAveragePooling1D()(x)`` on a sequence model -> ``x.mean(dim=1)``."""
        inner = original_node.func
        if isinstance(inner, cst.Call) and self.ctx.in_model_scope() and not self.spatial():
            name = self.ctx.qualified_name(inner.func) or ""
            if name in self.TARGETS and name.endswith("1D") and len(updated_node.args) == 1:
                keepdims = any(a.keyword is not None and a.keyword.value == "keepdims" and literal(a.value, None) is True
                               for a in inner.args)
                method = "amax" if "Max" in name else "mean"
                suffix = ", keepdim=True" if keepdims else ""
                x = cst.Module(body=[]).code_for_node(updated_node.args[0].value)
                return expr(f"({x}).{method}(dim=1{suffix})" if not isinstance(
                    updated_node.args[0].value, (cst.Name, cst.Attribute)) else f"{x}.{method}(dim=1{suffix})")
        return super().leave_Call(original_node, updated_node)
