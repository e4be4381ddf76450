"""super().__init__(**kwargs) / super(M, self).__init__(name=...) -> super().__init__() (nn.Module takes no
name/dtype/trainable keyword arguments)."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule
from rules.cst_tools import expr
from rules.keras_to_torch._base import keras_src


_KERAS_ONLY = frozenset({"name", "dtype", "trainable", "autocast"})


class SuperInitRule(Rule):
    id = "super-init"
    description = "super().__init__(**kwargs) in both spellings -> super().__init__() (Keras-only kwargs dropped)"
    order = 80
    EXAMPLES = (
        Example(keras_src().replace("super().__init__()", "super().__init__(**kwargs)"), keras_src()),
        Example(keras_src().replace("super().__init__()", "super(M, self).__init__(name='m')"), keras_src()),
        Example("import keras\n\n\nclass A(keras.Model):\n    pass\n\n\nclass B(A):\n    def __init__(self, n):\n"
                "        super().__init__(n, name='b')\n",
                "import keras\n\n\nclass A(keras.Model):\n    pass\n\n\nclass B(A):\n    def __init__(self, n):\n"
                "        super().__init__(n)\n"),
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
        info = self.ctx.current_class()
        if info is not None and any(u in self.ctx.analysis.classes and self.ctx.analysis.classes[u].torch_model
                                    for u in info.uses):
            # A subclass of a model class of this file: its own arguments (positional too) still go up; only the
            # Keras-only keywords (name, dtype, trainable, **kwargs) are dropped.
            kept = [a for a in updated_node.args if not a.star and not (
                a.keyword is not None and a.keyword.value in _KERAS_ONLY)]
            if kept:
                kept[-1] = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
            return updated_node.with_changes(func=expr("super().__init__"), args=kept)
        return expr("super().__init__()")
