"""Weight-initialization code in a model (``nn.init.*_(...)`` calls, ``for m in self.modules(): ...`` init loops,
``self.apply(fn)``) is not forward code: it becomes a comment under a TODO that names the Keras initializer.

Keras layers initialize their own weights when they are built (``kernel_initializer=...``); a rewritten model that
gets its weights by transfer (``--verify``, ``crossport transfer``) is unaffected, and one trained from scratch
should set the named initializer on the layer by hand. Left live, the torch calls would crash on Keras layers.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_tools import code

#: nn.init function -> the Keras initializer that draws the same distribution (for the TODO text).
INITIALIZERS = {
    "normal_": "RandomNormal(mean, stddev)", "uniform_": "RandomUniform(a, b)", "constant_": "Constant(value)",
    "zeros_": '"zeros"', "ones_": '"ones"', "xavier_uniform_": '"glorot_uniform"', "xavier_normal_": '"glorot_normal"',
    "kaiming_normal_": 'VarianceScaling(2.0, mode="fan_in"|"fan_out", distribution="untruncated_normal")',
    "kaiming_uniform_": 'VarianceScaling(2.0, mode="fan_in"|"fan_out", distribution="uniform")',
    "orthogonal_": "Orthogonal(gain)", "trunc_normal_": "TruncatedNormal(mean, stddev)", "eye_": "Identity()",
}
_ITERATORS = frozenset({"modules", "named_modules", "children", "named_children", "parameters", "named_parameters"})


class WeightInitRule(Rule):
    id = "weight-init"
    description = ("nn.init.*_(...) statements, `for m in self.modules():` init loops and self.apply(fn) in model "
                   "code -> commented out under a TODO naming the Keras initializer (kernel_initializer=...)")
    order = 97
    EXAMPLES = (
        Example(model_src(("self.fc = nn.Linear(2, 2)", "nn.init.xavier_uniform_(self.fc.weight)", "self.drop = nn.Dropout(0.1)")),
                model_src(("self.fc = nn.Linear(2, 2)",
                           "# crossport: TODO(weight-init): weight initialization is not forward code; in Keras set "
                           'the layer\'s initializer: xavier_uniform_ -> keras.initializers "glorot_uniform"',
                           "# nn.init.xavier_uniform_(self.fc.weight)",
                           "self.drop = nn.Dropout(0.1)"))),
    )

    def _init_call(self, node: cst.BaseExpression) -> str | None:
        if isinstance(node, cst.Call) and isinstance(node.func, (cst.Name, cst.Attribute)):
            name = self.ctx.qualified_name(node.func) or ""
            if name.startswith("torch.nn.init."):
                return name.rsplit(".", 1)[-1]
        return None

    def _is_init(self, stmt: cst.BaseStatement) -> list[str] | None:
        """The nn.init functions a statement calls when it is initialization code only, else None."""
        if isinstance(stmt, cst.SimpleStatementLine):
            found = []
            for small in stmt.body:
                if not isinstance(small, cst.Expr):
                    return None
                name = self._init_call(small.value)
                if name is None:
                    func = small.value.func if isinstance(small.value, cst.Call) else None
                    if isinstance(func, cst.Attribute) and code(func.value) == "self" and func.attr.value == "apply":
                        name = "apply"
                    else:
                        return None
                found.append(name)
            return found
        if isinstance(stmt, cst.For):
            it = stmt.iter
            if isinstance(it, cst.Call) and isinstance(it.func, cst.Attribute) and code(it.func.value) == "self" and (
                    it.func.attr.value in _ITERATORS):
                return [n for s in _walk_statements(stmt.body) for n in (self._is_init(s) or [])]
            return None
        if isinstance(stmt, cst.If):
            names: list[str] = []
            branch: cst.CSTNode | None = stmt
            while isinstance(branch, (cst.If, cst.Else)):
                for s in branch.body.body:
                    inner = self._is_init(s)
                    if inner is None:
                        return None
                    names += inner
                branch = branch.orelse if isinstance(branch, cst.If) else None
            return names
        return None

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        if not self.ctx.in_model_scope():
            return updated_node
        kept: list[cst.BaseStatement] = []
        pending: list[cst.EmptyLine] = []
        changed = False
        for orig, new in zip(original_node.body, updated_node.body):
            names = self._is_init(orig)
            if names is None or not names:
                if pending:
                    new = new.with_changes(leading_lines=[*pending, *new.leading_lines])
                    pending = []
                kept.append(new)
                continue
            changed = True
            pending += list(orig.leading_lines)
            hints = ", ".join(dict.fromkeys(f"{n} -> keras.initializers {INITIALIZERS[n]}" for n in names if n in INITIALIZERS))
            why = "weight initialization is not forward code; in Keras set the layer's initializer" + (
                f": {hints}" if hints else " (kernel_initializer=...)")
            pending.append(cst.EmptyLine(comment=cst.Comment(f"# crossport: TODO({self.id}): {why}")))
            text = cst.Module(body=[]).code_for_node(orig.with_changes(leading_lines=[])).rstrip("\n")
            pending += [cst.EmptyLine(comment=cst.Comment(("# " + ln).rstrip())) for ln in text.splitlines()]
        if not changed:
            return updated_node
        if pending:
            kept.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=pending))
        return updated_node.with_changes(body=kept)


def _walk_statements(block: cst.BaseSuite) -> list[cst.BaseStatement]:
    return list(block.body) if isinstance(block, cst.IndentedBlock) else []
