"""Normalization layers, written with the arithmetic Keras' TensorFlow backend uses at inference."""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.tflite_writer.context import WriteContext, node_args, refuse, weights
from converter.tflite_writer.fusion import bn_affine
from converter.tflite_writer.registry import handles


def _last_axis(node: Any, axis: Any, rank: int) -> None:
    axes = [axis] if isinstance(axis, int) else list(axis)
    if [a % rank for a in axes] != [rank - 1]:
        raise refuse(node, f"axis {axis} (only the last axis is written)")


@handles("BatchNormalization")
def batch_normalization(ctx: WriteContext, node: Any) -> None:
    """A batch norm no convolution absorbed: one MUL and one ADD (:func:`fusion.bn_affine`)."""
    op = node.operation
    x = node_args(node)[0][0]
    _last_axis(node, op.axis, len(x.shape))
    scale, shift = bn_affine(op)
    scaled = ctx.temp(x.shape, str(x.dtype))
    ctx.op("MUL", [ctx.get(x), ctx.weight(scale, "scale")], [scaled], ctx.options("MulOptions"))
    ctx.op("ADD", [scaled, ctx.weight(shift, "shift")], [ctx.out(node.outputs[0])], ctx.options("AddOptions"))


@handles("LayerNormalization")
def layer_normalization(ctx: WriteContext, node: Any) -> None:
    """``keras.ops.layer_normalization`` (TF backend): moments, ``inv = rsqrt(var + eps) * gamma``,
    ``x * inv + (beta - mean * inv)``."""
    op = node.operation
    x = node_args(node)[0][0]
    rank = len(x.shape)
    _last_axis(node, op.axis, rank)
    if op.rms_scaling:
        raise refuse(node, "rms_scaling")
    shape, reduced = tuple(x.shape), tuple(x.shape[:-1]) + (1,)
    axes = ctx.graph.const(np.asarray([rank - 1], np.int32))
    keep = ctx.options("ReducerOptions", keepDims=True)
    xi = ctx.get(x)
    mean, var, var_eps, inv = (ctx.temp(reduced) for _ in range(4))
    ctx.op("MEAN", [xi, axes], [mean], keep)
    diff = ctx.temp(shape)
    ctx.op("SQUARED_DIFFERENCE", [xi, mean], [diff])
    ctx.op("MEAN", [diff, axes], [var], keep)
    ctx.op("ADD", [var, ctx.graph.const(np.float32(op.epsilon))], [var_eps], ctx.options("AddOptions"))
    ctx.op("RSQRT", [var_eps], [inv])
    if op.scale:
        inv_g = ctx.temp(shape)
        ctx.op("MUL", [inv, ctx.weight(weights(op.gamma), "gamma")], [inv_g], ctx.options("MulOptions"))
        inv = inv_g
    mean_inv = ctx.temp(shape)
    ctx.op("MUL", [mean, inv], [mean_inv], ctx.options("MulOptions"))
    res = ctx.temp(shape)
    if op.center:
        ctx.op("SUB", [ctx.weight(weights(op.beta), "beta"), mean_inv], [res], ctx.options("SubOptions"))
    else:
        ctx.op("NEG", [mean_inv], [res])
    scaled = ctx.temp(shape)
    ctx.op("MUL", [xi, inv], [scaled], ctx.options("MulOptions"))
    ctx.op("ADD", [scaled, res], [ctx.out(node.outputs[0])], ctx.options("AddOptions"))
