"""super().__init__(**kwargs) / super(M, self).__init__(name=...) -> super().__init__() (nn.Module takes no
name/dtype/trainable keyword arguments)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import expr
from rules.keras_to_torch._base import keras_src


class SuperInitRule(Rule):
    id = "super-init"
    description = "super().__init__(**kwargs) in both spellings -> super().__init__() (Keras-only kwargs dropped)"
    order = 80
    EXAMPLES = (
        Example(keras_src().replace("super().__init__()", "super().__init__(**kwargs)"), keras_src()),
        Example(keras_src().replace("super().__init__()", "super(M, self).__init__(name='m')"), keras_src()),
    )

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = original_node.func
        is_super_init = (
            self.ctx.current_class() is not None and isinstance(func, cst.Attribute) and func.attr.value == "__init__"
            and isinstance(func.value, cst.Call) and isinstance(func.value.func, cst.Name)
            and func.value.func.value == "super"
        )
        if not is_super_init or (not original_node.args and not func.value.args):  # type: ignore[union-attr]
            return updated_node
        return expr("super().__init__()")
