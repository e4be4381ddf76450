"""Convolutions, pooling and padding (channels_last only: the builder has already moved layouts to NHWC)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.tflite_writer.context import WriteContext, node_args, refuse, weights
from converter.tflite_writer.fusion import epilogue
from converter.tflite_writer.registry import handles

_FUSED = {"linear": "NONE", "relu": "RELU", "relu6": "RELU6"}


def fused_activation(node: Any) -> str:
    """A layer's own ``activation`` as the name of the TFLite fused activation it matches."""
    act = node.operation.get_config().get("activation", "linear")
    if not isinstance(act, str) or act not in _FUSED:
        raise refuse(node, f"activation {act!r}")
    return _FUSED[act]


def act_code(name: str) -> int:
    from converter.tflite_writer.graph import schema

    return getattr(schema().ActivationFunctionType, name)


def folded(kernel: np.ndarray, bias: np.ndarray, scale: np.ndarray | None,
           shift: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Weights with a following batch norm folded in (``kernel``'s last axis is the output channel)."""
    if scale is None or shift is None:
        return kernel, bias
    return (kernel * scale).astype(np.float32), (bias * scale + shift).astype(np.float32)


def padding(node: Any) -> int:
    from converter.tflite_writer.graph import schema

    mode = node.operation.padding
    if mode not in ("same", "valid"):
        raise refuse(node, f"padding {mode!r}")
    return schema().Padding.SAME if mode == "same" else schema().Padding.VALID


def _channels_last(node: Any, rank: int) -> Any:
    op = node.operation
    x = node_args(node)[0][0]
    if getattr(op, "data_format", "channels_last") != "channels_last":
        raise refuse(node, "channels_first")
    if len(x.shape) != rank:
        raise refuse(node, f"input of rank {len(x.shape)}")
    return x


@handles("Conv2D")
def conv2d(ctx: WriteContext, node: Any) -> None:
    op = node.operation
    x = _channels_last(node, 4)
    if op.groups != 1:
        raise refuse(node, f"groups={op.groups}")
    kernel = weights(op.kernel)  # (kh, kw, in, out) -> TFLite (out, kh, kw, in)
    bias = weights(op.bias) if op.use_bias else np.zeros(kernel.shape[-1], kernel.dtype)
    scale, shift, act, out = epilogue(ctx, node.outputs[0], fused_activation(node))
    kernel, bias = folded(kernel, bias, scale, shift)
    w = ctx.weight(kernel.transpose(3, 0, 1, 2), "kernel")
    b = ctx.weight(bias, "bias")
    opts = ctx.options("Conv2DOptions", padding=padding(node), strideH=op.strides[0], strideW=op.strides[1],
                       dilationHFactor=op.dilation_rate[0], dilationWFactor=op.dilation_rate[1],
                       fusedActivationFunction=act_code(act))
    ctx.op("CONV_2D", [ctx.get(x), w, b], [ctx.out(out)], opts)


@handles("DepthwiseConv2D")
def depthwise_conv2d(ctx: WriteContext, node: Any) -> None:
    op = node.operation
    x = _channels_last(node, 4)
    kernel = weights(op.kernel)  # (kh, kw, in, mult) -> (1, kh, kw, in * mult): channel c * mult + m, as TF
    kh, kw, cin, mult = kernel.shape
    bias = weights(op.bias) if op.use_bias else np.zeros(cin * mult, kernel.dtype)
    scale, shift, act, out = epilogue(ctx, node.outputs[0], fused_activation(node))
    kernel, bias = folded(kernel.reshape(1, kh, kw, cin * mult), bias, scale, shift)
    w = ctx.weight(kernel, "depthwise_kernel")
    b = ctx.weight(bias, "bias")
    opts = ctx.options("DepthwiseConv2DOptions", padding=padding(node), strideH=op.strides[0],
                       strideW=op.strides[1], depthMultiplier=int(mult), dilationHFactor=op.dilation_rate[0],
                       dilationWFactor=op.dilation_rate[1], fusedActivationFunction=act_code(act))
    ctx.op("DEPTHWISE_CONV_2D", [ctx.get(x), w, b], [ctx.out(out)], opts)


def _pool(kind: str):
    def handler(ctx: WriteContext, node: Any) -> None:
        op = node.operation
        x = _channels_last(node, 4)
        opts = ctx.options("Pool2DOptions", padding=padding(node), strideH=op.strides[0], strideW=op.strides[1],
                           filterHeight=op.pool_size[0], filterWidth=op.pool_size[1])
        ctx.op(kind, [ctx.get(x)], [ctx.out(node.outputs[0])], opts)

    return handler


handles("MaxPooling2D")(_pool("MAX_POOL_2D"))
handles("AveragePooling2D")(_pool("AVERAGE_POOL_2D"))


def _global(kind: str, axes: tuple[int, ...], rank: int):
    def handler(ctx: WriteContext, node: Any) -> None:
        x = _channels_last(node, rank)
        keep = bool(node.operation.keepdims)
        opts = ctx.options("ReducerOptions", keepDims=keep)
        ctx.op(kind, [ctx.get(x), ctx.graph.const(np.asarray(axes, np.int32))], [ctx.out(node.outputs[0])], opts)

    return handler


handles("GlobalAveragePooling2D")(_global("MEAN", (1, 2), 4))
handles("GlobalMaxPooling2D")(_global("REDUCE_MAX", (1, 2), 4))
handles("GlobalAveragePooling1D")(_global("MEAN", (1,), 3))
handles("GlobalMaxPooling1D")(_global("REDUCE_MAX", (1,), 3))


@handles("ZeroPadding2D")
def zero_padding2d(ctx: WriteContext, node: Any) -> None:
    op = node.operation
    x = _channels_last(node, 4)
    (top, bottom), (left, right) = op.padding
    pads = np.asarray([[0, 0], [top, bottom], [left, right], [0, 0]], np.int32)
    ctx.op("PAD", [ctx.get(x), ctx.graph.const(pads)], [ctx.out(node.outputs[0])])


@handles("Pad")
def pad(ctx: WriteContext, node: Any) -> None:
    """``keras.ops.pad``: constant (PAD / PADV2 for a non-zero value), reflect and symmetric (MIRROR_PAD)."""
    from converter.tflite_writer.graph import schema

    op = node.operation
    args, kwargs = node_args(node)
    x = args[0]
    value = kwargs.get("constant_values", args[1] if len(args) > 1 else None)
    pads = ctx.graph.const(np.asarray(op.pad_width, np.int32).reshape(len(x.shape), 2))
    out = ctx.out(node.outputs[0])
    if op.mode == "constant":
        if value is None or float(value) == 0.0:
            ctx.op("PAD", [ctx.get(x), pads], [out])
        else:
            ctx.op("PADV2", [ctx.get(x), pads, ctx.graph.const(np.asarray(value, dtype=str(x.dtype)))], [out])
        return
    if op.mode not in ("reflect", "symmetric"):
        raise refuse(node, f"mode {op.mode!r}")
    mode = schema().MirrorPadMode.REFLECT if op.mode == "reflect" else schema().MirrorPadMode.SYMMETRIC
    ctx.op("MIRROR_PAD", [ctx.get(x), pads], [out], ctx.options("MirrorPadOptions", mode=mode))
