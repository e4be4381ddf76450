"""Weight-initialization code in a model (``nn.init.*_(...)`` calls, ``for m in self.modules(): ...`` init loops,
``self.apply(fn)``) is not forward code: it becomes a comment under a TODO that names the Keras initializer.

Keras layers initialize their own weights when they are built (``kernel_initializer=...``); a rewritten model that
gets its weights by transfer (``--verify``, ``crossport transfer``) is unaffected, and one trained from scratch
should set the named initializer on the layer by hand. Left live, the torch calls would crash on Keras layers.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_tools import Unbindable, bind_args, code, expr, literal

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
    description = ("nn.init.X_(self.layer.weight|bias, ...) -> that Keras layer's kernel/bias/gamma initializer "
                   "(same distribution, fans agree); other nn.init code, `for m in self.modules():` init loops and "
                   "self.apply(fn) -> commented out under a TODO naming the Keras initializer")
    order = 97
    EXAMPLES = (
        Example(model_src(("self.fc = nn.Linear(2, 2)", "nn.init.xavier_uniform_(self.fc.weight)", "self.drop = nn.Dropout(0.1)")),
                model_src(("self.fc = nn.Linear(2, 2)",
                           "# crossport: TODO(weight-init): weight initialization is not forward code; in Keras set "
                           'the layer\'s initializer: xavier_uniform_ -> keras.initializers "glorot_uniform"',
                           "# nn.init.xavier_uniform_(self.fc.weight)",
                           "self.drop = nn.Dropout(0.1)"))),
    )

    EXAMPLES = EXAMPLES + (
        Example(model_src(("self.fc = keras.layers.Dense(2)", "nn.init.normal_(self.fc.weight, 0.0, 0.02)",
                           "nn.init.zeros_(self.fc.bias)")),
                model_src(('self.fc = keras.layers.Dense(2, kernel_initializer=keras.initializers.RandomNormal('
                           'mean=0.0, stddev=0.02), bias_initializer="zeros")',
                           "# moved to self.fc's kernel initializer (crossport weight-init)",
                           "# nn.init.normal_(self.fc.weight, 0.0, 0.02)",
                           "# moved to self.fc's bias initializer (crossport weight-init)",
                           "# nn.init.zeros_(self.fc.bias)", "pass"))),
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
            moved = self._direct(orig)
            if moved is not None:  # nn.init.X_(self.conv.weight, ...) -> the layer's kernel_initializer
                pending.append(cst.EmptyLine(comment=cst.Comment(f"# moved to {moved} (crossport {self.id})")))
                text = cst.Module(body=[]).code_for_node(orig.with_changes(leading_lines=[])).rstrip("\n")
                pending += [cst.EmptyLine(comment=cst.Comment(("# " + ln).rstrip())) for ln in text.splitlines()]
                continue
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


    # -- nn.init.X_(self.<layer>.weight|bias, ...) -> the Keras layer's own initializer -------------------------
    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        #: class -> [(layer attribute, initializer keyword, Keras initializer source)]
        self._moves: dict[str, list[tuple[str, str, str]]] = {}
        #: class -> attributes assigned a single Keras layer so far (``self.conv = keras.layers.Conv2D(...)``)
        self._layers: dict[str, set[str]] = {}

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        info = self.ctx.current_class()
        target = updated_node.targets[0].target if len(updated_node.targets) == 1 else None
        if (info is not None and self.ctx.current_function() == "__init__" and isinstance(target, cst.Attribute)
                and code(target.value) == "self" and isinstance(updated_node.value, cst.Call)
                and code(updated_node.value.func).startswith("keras.layers.")):
            self._layers.setdefault(info.name, set()).add(target.attr.value)
        return updated_node

    def _direct(self, stmt: cst.BaseStatement) -> str | None:
        """Record a translatable ``nn.init`` call on ``self.<attr>.weight/bias``; the text saying where it went."""
        info = self.ctx.current_class()
        if info is None or not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
            return None
        small = stmt.body[0]
        call_node = small.value if isinstance(small, cst.Expr) else None
        name = self._init_call(call_node) if call_node is not None else None
        if name is None or not call_node.args:  # type: ignore[union-attr]
            return None
        target = call_node.args[0].value  # type: ignore[union-attr]
        if isinstance(target, cst.Attribute) and target.attr.value == "data":
            target = target.value
        if not (isinstance(target, cst.Attribute) and target.attr.value in ("weight", "bias")
                and isinstance(target.value, cst.Attribute) and code(target.value.value) == "self"):
            return None
        attr = target.value.attr.value
        if attr not in self._layers.get(info.name, set()):
            return None  # not a single Keras layer built in __init__ above: keep the TODO
        initializer = keras_initializer(name, call_node.args[1:], self.ctx.qualified_name)  # type: ignore[union-attr]
        if initializer is None:
            return None
        self._moves.setdefault(info.name, []).append((attr, target.attr.value, initializer))
        return f"self.{attr}'s {'kernel' if target.attr.value == 'weight' else 'bias'} initializer"

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        self._layers.pop(original_node.name.value, None)
        moves = self._moves.pop(original_node.name.value, [])
        if not moves:
            return updated_node
        body = list(updated_node.body.body)
        for i, stmt in enumerate(body):
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "__init__":
                body[i] = stmt.visit(_AddInitializers(moves))  # type: ignore[assignment]
        return updated_node.with_changes(body=updated_node.body.with_changes(body=body))


#: keras layer -> (keyword for torch's ``weight``, keyword for torch's ``bias``)
_KEYWORDS = {"BatchNormalization": ("gamma_initializer", "beta_initializer"),
             "LayerNormalization": ("gamma_initializer", "beta_initializer"),
             "GroupNormalization": ("gamma_initializer", "beta_initializer"),
             "Embedding": ("embeddings_initializer", None)}


class _AddInitializers(cst.CSTTransformer):
    """``self.conv = keras.layers.Conv2D(...)`` in ``__init__`` gains ``kernel_initializer=...`` (and so on)."""

    def __init__(self, moves: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.moves = moves

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        target = updated_node.targets[0].target if len(updated_node.targets) == 1 else None
        value = updated_node.value
        if not (isinstance(target, cst.Attribute) and code(target.value) == "self" and isinstance(value, cst.Call)
                and code(value.func).startswith("keras.layers.")):
            return updated_node
        layer = code(value.func).rsplit(".", 1)[-1]
        kernel, bias = _KEYWORDS.get(layer, ("kernel_initializer", "bias_initializer"))
        args = list(value.args)
        for attr, which, initializer in self.moves:
            keyword = kernel if which == "weight" else bias
            if attr != target.attr.value or keyword is None or any(
                    a.keyword is not None and a.keyword.value == keyword for a in args):
                continue
            if args:
                args[-1] = args[-1].with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")))
            args.append(cst.Arg(expr(initializer), keyword=cst.Name(keyword),
                                equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""),
                                                      whitespace_after=cst.SimpleWhitespace(""))))
        return updated_node.with_changes(value=value.with_changes(args=args))


_GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3,
          "relu": 2.0 ** 0.5, "selu": 0.75}


def _gain(node: cst.BaseExpression | None, qname) -> float | None:  # type: ignore[no-untyped-def]
    """A literal gain, or ``nn.init.calculate_gain('relu')`` evaluated."""
    if node is None:
        return 1.0
    value = literal(node, None)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(node, cst.Call) and (qname(node.func) or "") == "torch.nn.init.calculate_gain" and node.args:
        which = literal(node.args[0].value, None)
        if which == "leaky_relu":
            slope = literal(node.args[1].value, None) if len(node.args) > 1 else 0.01
            return (2.0 / (1 + slope ** 2)) ** 0.5 if isinstance(slope, (int, float)) else None
        return _GAINS.get(which)  # type: ignore[arg-type]
    return None


def keras_initializer(name: str, args, qname) -> str | None:  # type: ignore[no-untyped-def]
    """The Keras initializer that draws what ``nn.init.<name>(w, *args)`` draws (fans agree: torch's (out, in, k...)
    and Keras' (k..., in, out) kernels have the same fan_in / fan_out); None when not literal enough to say."""
    try:
        bound = bind_args(cst.Call(func=cst.Name("f"), args=list(args)), _SIGNATURES.get(name, []))
    except Unbindable:
        return None
    value = {k: literal(v, None) for k, v in bound.items()}
    if any(v is None for k, v in value.items() if k not in ("gain",)):
        return None
    if name in ("zeros_", "ones_"):
        return f'"{name[:-1]}"'
    if name == "constant_":
        return f"keras.initializers.Constant({value['val']!r})"
    if name == "normal_":
        return f"keras.initializers.RandomNormal(mean={value.get('mean', 0.0)!r}, stddev={value.get('std', 1.0)!r})"
    if name == "uniform_":
        return f"keras.initializers.RandomUniform(minval={value.get('a', 0.0)!r}, maxval={value.get('b', 1.0)!r})"
    if name == "trunc_normal_":
        return None  # torch truncates at absolute a/b, Keras at two standard deviations
    gain = _gain(bound.get("gain"), qname)
    if gain is None:
        return None
    if name in ("xavier_uniform_", "xavier_normal_"):
        dist = "uniform" if name == "xavier_uniform_" else "untruncated_normal"
        return f'keras.initializers.VarianceScaling(scale={gain ** 2!r}, mode="fan_avg", distribution="{dist}")'
    if name == "orthogonal_":
        return f"keras.initializers.Orthogonal(gain={gain!r})"
    if name in ("kaiming_normal_", "kaiming_uniform_"):
        slope = value.get("a", 0.0)
        nonlinearity = value.get("nonlinearity", "leaky_relu")
        scale = 2.0 / (1 + slope ** 2) if nonlinearity == "leaky_relu" else _GAINS.get(nonlinearity, 0.0) ** 2
        if not scale:
            return None
        dist = "untruncated_normal" if name == "kaiming_normal_" else "uniform"
        return (f'keras.initializers.VarianceScaling(scale={scale!r}, mode="{value.get("mode", "fan_in")}", '
                f'distribution="{dist}")')
    return None


_SIGNATURES = {
    "normal_": ["mean", "std"], "uniform_": ["a", "b"], "constant_": ["val"], "zeros_": [], "ones_": [],
    "xavier_uniform_": ["gain"], "xavier_normal_": ["gain"], "orthogonal_": ["gain"],
    "kaiming_normal_": ["a", "mode", "nonlinearity"], "kaiming_uniform_": ["a", "mode", "nonlinearity"],
}


def _walk_statements(block: cst.BaseSuite) -> list[cst.BaseStatement]:
    return list(block.body) if isinstance(block, cst.IndentedBlock) else []
