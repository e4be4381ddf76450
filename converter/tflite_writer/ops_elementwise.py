"""Elementwise ops: arithmetic with broadcasting (layers and ``keras.ops``), activations, casts."""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.tflite_writer.context import WriteContext, node_args, refuse
from converter.tflite_writer.fusion import fused_relu
from converter.tflite_writer.ops_conv import act_code
from converter.tflite_writer.registry import handles

_BINARY = {"Add": ("ADD", "AddOptions"), "Multiply": ("MUL", "MulOptions"), "Subtract": ("SUB", "SubOptions"),
           "Divide": ("DIV", "DivOptions"), "TrueDivide": ("DIV", "DivOptions"), "Maximum": ("MAXIMUM", None),
           "Minimum": ("MINIMUM", None), "Power": ("POW", None), "SquaredDifference": ("SQUARED_DIFFERENCE", None)}


def _operands(node: Any) -> list[Any]:
    """A merging layer's list argument or an op's positional operands."""
    args, _ = node_args(node)
    return list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) else list(args)


@handles(*_BINARY)
def binary(ctx: WriteContext, node: Any) -> None:
    """n-ary merging layers (``Add()([a, b, c])``) chain; constants take the result's dtype, as Keras' type
    promotion of a Python number does."""
    kind = type(node.operation).__name__
    name, options = _BINARY[kind]
    out_kt = node.outputs[0]
    dtype = str(out_kt.dtype)
    operands = _operands(node)
    if len(operands) < 2:
        raise refuse(node, f"{len(operands)} operands")
    for v in operands:
        if ctx.is_tensor(v) and str(v.dtype) != dtype:
            raise refuse(node, f"mixed dtypes ({v.dtype} -> {dtype})")
    ids = [ctx.operand(v, dtype) for v in operands]
    act = "NONE"
    if options in ("AddOptions", "MulOptions", "SubOptions", "DivOptions") and dtype == "float32":
        act, out_kt = fused_relu(ctx, out_kt)
    acc = ids[0]
    for k, other in enumerate(ids[1:], start=2):
        last = k == len(ids)
        target = ctx.out(out_kt) if last else ctx.temp(out_kt.shape, dtype)
        opts = None
        if options:
            opts = ctx.options(options, fusedActivationFunction=act_code(act if last else "NONE"))
        ctx.op(name, [acc, other], [target], opts)
        acc = target


def _unary(name: str, options: str | None = None, **fields: Any):
    def handler(ctx: WriteContext, node: Any) -> None:
        x = _operands(node)[0]
        ctx.op(name, [ctx.get(x)], [ctx.out(node.outputs[0])], ctx.options(options, **fields) if options else None)

    return handler


for _cls, _tfl in {"Relu": "RELU", "Relu6": "RELU6", "Sigmoid": "LOGISTIC", "Tanh": "TANH", "Exp": "EXP",
                   "Log": "LOG", "Sqrt": "SQRT", "Rsqrt": "RSQRT", "Abs": "ABS", "Negative": "NEG",
                   "Square": "SQUARE", "Sin": "SIN", "Cos": "COS", "Floor": "FLOOR", "Ceil": "CEIL",
                   "Sign": "SIGN", "ZerosLike": "ZEROS_LIKE", "HardSilu": "HARD_SWISH", "HardSwish": "HARD_SWISH",
                   "Elu": "ELU"}.items():
    handles(_cls)(_unary(_tfl))


@handles("Identity")
def identity(ctx: WriteContext, node: Any) -> None:
    ctx.bind(node.outputs[0], ctx.get(_operands(node)[0]))


@handles("Silu", "Swish")
def silu(ctx: WriteContext, node: Any) -> None:
    _silu(ctx, _operands(node)[0], node.outputs[0])


def _silu(ctx: WriteContext, x: Any, out: Any) -> None:
    sig = ctx.temp(x.shape, str(x.dtype))
    ctx.op("LOGISTIC", [ctx.get(x)], [sig])
    ctx.op("MUL", [ctx.get(x), sig], [ctx.out(out)], ctx.options("MulOptions"))


@handles("Gelu")
def gelu(ctx: WriteContext, node: Any) -> None:
    args, kwargs = node_args(node)
    approximate = bool(getattr(node.operation, "approximate", kwargs.get("approximate", True)))
    ctx.op("GELU", [ctx.get(args[0])], [ctx.out(node.outputs[0])],
           ctx.options("GeluOptions", approximate=approximate))


@handles("Softmax")
def softmax(ctx: WriteContext, node: Any) -> None:
    args, kwargs = node_args(node)
    x = args[0]
    axis = getattr(node.operation, "axis", kwargs.get("axis", -1))
    axes = [axis] if isinstance(axis, int) else list(axis)
    if [a % len(x.shape) for a in axes] != [len(x.shape) - 1]:
        raise refuse(node, f"axis {axis} (only the last axis is written)")
    if len(args) > 1 or kwargs.get("mask") is not None:
        raise refuse(node, "a mask")
    ctx.op("SOFTMAX", [ctx.get(x)], [ctx.out(node.outputs[0])], ctx.options("SoftmaxOptions", beta=1.0))


@handles("ReLU")
def relu_layer(ctx: WriteContext, node: Any) -> None:
    op = node.operation
    x = _operands(node)[0]
    slope, top, threshold = float(op.negative_slope), op.max_value, float(op.threshold)
    if threshold != 0.0:
        raise refuse(node, f"threshold {threshold}")
    out = node.outputs[0]
    if top is None and slope == 0.0:
        ctx.op("RELU", [ctx.get(x)], [ctx.out(out)])
    elif top is not None and float(top) == 6.0 and slope == 0.0:
        ctx.op("RELU6", [ctx.get(x)], [ctx.out(out)])
    elif top is None:
        ctx.op("LEAKY_RELU", [ctx.get(x)], [ctx.out(out)], ctx.options("LeakyReluOptions", alpha=slope))
    else:
        raise refuse(node, f"max_value {top} with negative_slope {slope}")


@handles("LeakyReLU")
def leaky_relu(ctx: WriteContext, node: Any) -> None:
    alpha = float(getattr(node.operation, "negative_slope", getattr(node.operation, "alpha", 0.3)))
    ctx.op("LEAKY_RELU", [ctx.get(_operands(node)[0])], [ctx.out(node.outputs[0])],
           ctx.options("LeakyReluOptions", alpha=alpha))


_ACTIVATIONS = {"relu": "RELU", "sigmoid": "LOGISTIC", "tanh": "TANH", "relu6": "RELU6", "elu": "ELU",
                "exponential": "EXP", "hard_silu": "HARD_SWISH", "hard_swish": "HARD_SWISH"}


@handles("Activation")
def activation(ctx: WriteContext, node: Any) -> None:
    name = node.operation.get_config().get("activation")
    if not isinstance(name, str):
        raise refuse(node, f"custom activation {name!r}")
    x = _operands(node)[0]
    out = node.outputs[0]
    if name == "linear":
        ctx.bind(out, ctx.get(x))
    elif name in _ACTIVATIONS:
        ctx.op(_ACTIVATIONS[name], [ctx.get(x)], [ctx.out(out)])
    elif name in ("silu", "swish"):
        _silu(ctx, x, out)
    elif name == "gelu":  # keras.activations.gelu's default
        ctx.op("GELU", [ctx.get(x)], [ctx.out(out)], ctx.options("GeluOptions", approximate=False))
    elif name == "softmax" and len(x.shape) >= 1:
        ctx.op("SOFTMAX", [ctx.get(x)], [ctx.out(out)], ctx.options("SoftmaxOptions", beta=1.0))
    else:
        raise refuse(node, f"activation {name!r}")


@handles("Clip")
def clip(ctx: WriteContext, node: Any) -> None:
    """``tf.clip_by_value``'s own order: ``minimum(maximum(x, lo), hi)``."""
    op = node.operation
    x = _operands(node)[0]
    dtype = str(x.dtype)
    low = ctx.temp(x.shape, dtype)
    ctx.op("MAXIMUM", [ctx.get(x), ctx.graph.const(np.asarray(op.x_min, dtype))], [low])
    ctx.op("MINIMUM", [low, ctx.graph.const(np.asarray(op.x_max, dtype))], [ctx.out(node.outputs[0])])


@handles("Cast")
def cast(ctx: WriteContext, node: Any) -> None:
    from converter.tflite_writer.graph import tensor_type

    x = _operands(node)[0]
    out = node.outputs[0]
    if str(x.dtype) == str(out.dtype):
        ctx.bind(out, ctx.get(x))
        return
    opts = ctx.options("CastOptions", inDataType=tensor_type(str(x.dtype)), outDataType=tensor_type(str(out.dtype)))
    ctx.op("CAST", [ctx.get(x)], [ctx.out(out)], opts)


_COMPARE = {"Equal": "EQUAL", "NotEqual": "NOT_EQUAL", "Less": "LESS", "LessEqual": "LESS_EQUAL",
            "Greater": "GREATER", "GreaterEqual": "GREATER_EQUAL", "LogicalAnd": "LOGICAL_AND",
            "LogicalOr": "LOGICAL_OR"}


@handles(*_COMPARE)
def compare(ctx: WriteContext, node: Any) -> None:
    """Boolean results: a constant operand takes the *tensor* operand's dtype."""
    a, b = _operands(node)[:2]
    like = a if ctx.is_tensor(a) else b
    if ctx.is_tensor(a) and ctx.is_tensor(b) and str(a.dtype) != str(b.dtype):
        raise refuse(node, f"mixed dtypes ({a.dtype}, {b.dtype})")
    ids = [ctx.operand(v, str(like.dtype)) for v in (a, b)]
    ctx.op(_COMPARE[type(node.operation).__name__], ids, [ctx.out(node.outputs[0])])


@handles("LogicalNot")
def logical_not(ctx: WriteContext, node: Any) -> None:
    ctx.op("LOGICAL_NOT", [ctx.get(_operands(node)[0])], [ctx.out(node.outputs[0])])


@handles("Where")
def where(ctx: WriteContext, node: Any) -> None:
    args = _operands(node)
    if len(args) != 3 or any(v is None for v in args):
        raise refuse(node, "where() with one argument")
    out = node.outputs[0]
    cond = ctx.operand(args[0], bool)
    ids = [ctx.operand(v, str(out.dtype)) for v in args[1:]]
    if any(ctx.is_tensor(v) and str(v.dtype) != str(out.dtype) for v in args[1:]):
        raise refuse(node, "mixed dtypes")
    ctx.op("SELECT_V2", [cond, *ids], [ctx.out(out)])
