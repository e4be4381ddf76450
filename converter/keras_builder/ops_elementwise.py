"""Elementwise ops: activations, arithmetic with broadcasting, clipping. Layout passes straight through."""
from __future__ import annotations

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder import params
from converter.keras_builder.context import KT, BuildContext
from converter.keras_builder.registry import handles


def _unary(fn):
    def handler(ctx: BuildContext, node) -> list[KT]:
        x = ctx.materialize(ctx.get(node.input[0]))
        return [KT(fn(ctx, node, x.value), x.perm)]

    return handler


def _act_layer(kind: str):
    def make(ctx: BuildContext, node, v):
        import keras

        if kind == "relu":
            return keras.layers.ReLU(name=ctx.layer_name(node))(v)
        return keras.layers.Activation(kind, name=ctx.layer_name(node))(v)

    return make


def _ops(fn_name: str, **kw):
    def make(ctx: BuildContext, node, v):
        from keras import ops

        return getattr(ops, fn_name)(v, **kw)

    return make


for _op, _fn in {
    "Relu": _act_layer("relu"),
    "Sigmoid": _act_layer("sigmoid"),
    "Tanh": _act_layer("tanh"),
    "Softplus": _ops("softplus"),
    "Softsign": _ops("softsign"),
    "Erf": _ops("erf"),
    "Exp": _ops("exp"),
    "Log": _ops("log"),
    "Sqrt": _ops("sqrt"),
    "Neg": _ops("negative"),
    "Abs": _ops("abs"),
    "Reciprocal": _ops("reciprocal"),
    "Sin": _ops("sin"),
    "Cos": _ops("cos"),
    "Floor": _ops("floor"),
    "Ceil": _ops("ceil"),
    "Sign": _ops("sign"),
    "HardSwish": _ops("hard_silu"),
}.items():
    handles(_op)(_unary(_fn))


@handles("Identity", "Dropout")
def identity_op(ctx: BuildContext, node) -> list[KT]:
    outs = [ctx.get(node.input[0])]
    if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]:
        raise UnsupportedError(f"Dropout node {node.name!r}: the mask output is not supported")
    return outs


@handles("Gelu")
def gelu(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    approx = ctx.attr(node, "approximate", "none") == "tanh"
    return [KT(ops.gelu(x.value, approximate=approx), x.perm)]


@handles("LeakyRelu")
def leaky_relu(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.materialize(ctx.get(node.input[0]))
    slope = float(ctx.attr(node, "alpha", 0.01))
    return [KT(keras.layers.LeakyReLU(negative_slope=slope, name=ctx.layer_name(node))(x.value), x.perm)]


@handles("Elu")
def elu(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.materialize(ctx.get(node.input[0]))
    alpha = float(ctx.attr(node, "alpha", 1.0))
    return [KT(keras.layers.ELU(alpha=alpha, name=ctx.layer_name(node))(x.value), x.perm)]


@handles("HardSigmoid")
def hard_sigmoid(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    alpha = float(ctx.attr(node, "alpha", 0.2))
    beta = float(ctx.attr(node, "beta", 0.5))
    return [KT(ops.clip(ops.add(ops.multiply(x.value, alpha), beta), 0.0, 1.0), x.perm)]


@handles("Clip")
def clip(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    lo = ctx.optional_const(node, 1, "minimum")
    hi = ctx.optional_const(node, 2, "maximum")
    if ctx.opset < 11:
        lo = ctx.attr(node, "min", None)
        hi = ctx.attr(node, "max", None)
    lo_f = float(np.asarray(lo)) if lo is not None else float("-inf")
    hi_f = float(np.asarray(hi)) if hi is not None else float("inf")
    if lo_f == 0.0 and hi_f == 6.0:
        import keras

        return [KT(keras.layers.ReLU(max_value=6.0, name=ctx.layer_name(node))(x.value), x.perm)]
    return [KT(ops.clip(x.value, lo_f, hi_f), x.perm)]


def _align(ctx: BuildContext, a: KT, b: KT) -> tuple[object, object, tuple[int, ...]]:
    """Bring two operands into one order for a broadcasting op; constants follow the tensor."""
    a, b = ctx.materialize(a), ctx.materialize(b)
    if a.is_const and b.is_const:
        raise UnsupportedError("elementwise op on two constants was not folded")
    if a.is_const:
        return ctx.const_for(a.value, b), b.value, b.perm
    if b.is_const:
        return a.value, ctx.const_for(b.value, a), a.perm
    if a.rank == b.rank:
        if a.perm != b.perm:
            b = ctx.to_perm(b, a.perm)
        return a.value, b.value, a.perm
    a, b = ctx.to_identity(a), ctx.to_identity(b)
    return a.value, b.value, tuple(range(max(a.rank, b.rank)))


def _const_operand(v):
    """Scalars stay Python floats so the saved Keras config stays small and readable."""
    if isinstance(v, np.ndarray) and v.size == 1 and v.ndim <= 4:
        return v.astype("float32") if v.dtype.kind == "f" else v
    return v


def _binary(fn_name: str, layer: str | None = None):
    def handler(ctx: BuildContext, node) -> list[KT]:
        import keras
        from keras import ops

        if len([i for i in node.input if i]) != 2:
            raise UnsupportedError(f"{node.op_type} node {node.name!r}: only two operands are supported")
        a, b = ctx.get(node.input[0]), ctx.get(node.input[1])
        kept = params.as_layer(ctx, node, a, b)
        if kept is not None:
            return [kept]
        av, bv, perm = _align(ctx, a, b)
        if layer and not isinstance(av, np.ndarray) and not isinstance(bv, np.ndarray) \
                and tuple(av.shape) == tuple(bv.shape):
            return [KT(getattr(keras.layers, layer)(name=ctx.layer_name(node))([av, bv]), perm)]
        return [KT(getattr(ops, fn_name)(_const_operand(av), _const_operand(bv)), perm)]

    return handler


for _op, (_fn, _layer) in {
    "Add": ("add", "Add"),
    "Sub": ("subtract", "Subtract"),
    "Mul": ("multiply", "Multiply"),
    "Pow": ("power", None),
    "Max": ("maximum", None),
    "Min": ("minimum", None),
    "Equal": ("equal", None),
    "Greater": ("greater", None),
    "Less": ("less", None),
    "GreaterOrEqual": ("greater_equal", None),
    "LessOrEqual": ("less_equal", None),
    "And": ("logical_and", None),
    "Or": ("logical_or", None),
    "Xor": ("logical_xor", None),
    "Mod": ("mod", None),
}.items():
    handles(_op)(_binary(_fn, _layer))


@handles("Not")
def logical_not(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    return [KT(ops.logical_not(x.value), x.perm)]


@handles("IsNaN")
def is_nan(ctx: BuildContext, node) -> list[KT]:
    """``x != x``: true exactly for NaN, and TFLite has a builtin NOT_EQUAL where it has no IsNan kernel.
    (Exported attention writes ``Where(IsNaN(softmax), 0, softmax)`` for rows where every key is masked.)"""
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    return [KT(ops.not_equal(x.value, x.value), x.perm)]


@handles("IsInf")
def is_inf(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    pos = int(ctx.attr(node, "detect_positive", 1))
    neg = int(ctx.attr(node, "detect_negative", 1))
    if pos and neg:
        return [KT(ops.equal(ops.abs(x.value), float("inf")), x.perm)]
    if pos:
        return [KT(ops.equal(x.value, float("inf")), x.perm)]
    if neg:
        return [KT(ops.equal(x.value, float("-inf")), x.perm)]
    return [KT(ops.logical_and(ops.equal(x.value, 0.0), ops.not_equal(x.value, x.value)), x.perm)]


@handles("Where")
def where(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    cond = ctx.to_identity(ctx.get(node.input[0]))
    a = ctx.to_identity(ctx.get(node.input[1]))
    b = ctx.to_identity(ctx.get(node.input[2]))
    rank = max(cond.rank, a.rank, b.rank)
    return [KT(ops.where(cond.value, a.value, b.value), tuple(range(rank)))]


@handles("Cast")
def cast(ctx: BuildContext, node) -> list[KT]:
    from keras import ops
    from onnx import helper

    x = ctx.materialize(ctx.get(node.input[0]))
    to = helper.tensor_dtype_to_np_dtype(int(ctx.attr(node, "to")))
    return [KT(ops.cast(x.value, str(np.dtype(to))), x.perm)]


_DIVIDE = _binary("divide", None)


@handles("Div")
def divide(ctx: BuildContext, node) -> list[KT]:
    """Division -- and the start of exact GELU as torch.onnx.export writes ``nn.GELU()``, which becomes one
    ``ops.gelu``: TFLite then maps it to its builtin GELU kernel, where the Erf of the spelled-out form has no
    builtin and forced a second conversion with Flex (Select TF) ops for ViT-B/16 (benchmarks/zoo.py)."""
    fused = _exact_gelu(ctx, node)
    if fused is None:
        return _DIVIDE(ctx, node)
    from keras import ops

    output, inner = fused
    x = ctx.materialize(ctx.get(node.input[0]))
    gelu_out = KT(ops.gelu(x.value, approximate=False), x.perm)
    ctx.skipped_nodes.update(n.output[0] for n in inner)
    ctx.env[output] = gelu_out
    return _DIVIDE(ctx, node)  # x / sqrt(2) itself: unused once the Erf is skipped, so not part of the model


def _scalar(ctx: BuildContext, name: str) -> float | None:
    if not ctx.has(name) or not ctx.get(name).is_const:
        return None
    arr = np.asarray(ctx.get(name).value)
    return float(arr.reshape(())) if arr.size == 1 else None


def _sole_consumer(ctx: BuildContext, name: str, op_type: str):
    found = ctx.consumers.get(name, [])
    return found[0] if len(found) == 1 and found[0].op_type == op_type else None


def _other(node, name: str) -> str | None:
    """The other operand of a binary node that takes ``name``."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def _exact_gelu(ctx: BuildContext, div) -> tuple[str, list] | None:
    """``x / sqrt(2) -> Erf -> + 1 -> * 0.5 -> * x`` (either operand order): the GELU output and its inner nodes."""
    x = div.input[0]
    if _scalar(ctx, div.input[1]) is None or abs(_scalar(ctx, div.input[1]) - 2 ** 0.5) > 1e-6:
        return None
    erf = _sole_consumer(ctx, div.output[0], "Erf")
    add = erf is not None and _sole_consumer(ctx, erf.output[0], "Add")
    if not add or _scalar(ctx, _other(add, erf.output[0]) or "") != 1.0:
        return None
    half = _sole_consumer(ctx, add.output[0], "Mul")
    if half is None or _scalar(ctx, _other(half, add.output[0]) or "") != 0.5:
        return None
    final = _sole_consumer(ctx, half.output[0], "Mul")
    if final is None or _other(final, half.output[0]) != x:
        return None
    return final.output[0], [erf, add, half, final]
