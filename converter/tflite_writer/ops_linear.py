"""Dense layers, matrix products and embedding lookups."""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.tflite_writer.context import WriteContext, node_args, refuse, weights
from converter.tflite_writer.fusion import epilogue
from converter.tflite_writer.ops_conv import act_code, folded, fused_activation
from converter.tflite_writer.registry import handles


@handles("Dense")
def dense(ctx: WriteContext, node: Any) -> None:
    """FULLY_CONNECTED over the last axis (``keep_num_dims`` keeps the leading ones, dynamic ones included)."""
    op = node.operation
    x = node_args(node)[0][0]
    if getattr(op, "lora_enabled", False) or getattr(op, "quantization_mode", None):
        raise refuse(node, "LoRA / quantized Dense")
    kernel = weights(op.kernel)  # (in, out) -> (out, in)
    bias = weights(op.bias) if op.use_bias else np.zeros(kernel.shape[1], kernel.dtype)
    scale, shift, act, out = epilogue(ctx, node.outputs[0], fused_activation(node))
    kernel, bias = folded(kernel, bias, scale, shift)
    w = ctx.weight(kernel.T, "kernel")
    b = ctx.weight(bias, "bias")
    opts = ctx.options("FullyConnectedOptions", fusedActivationFunction=act_code(act), keepNumDims=len(x.shape) > 2)
    ctx.op("FULLY_CONNECTED", [ctx.get(x), w, b], [ctx.out(out)], opts)


@handles("Matmul")
def matmul(ctx: WriteContext, node: Any) -> None:
    args, _ = node_args(node)
    a, b = args[:2]
    if len(a.shape if ctx.is_tensor(a) else np.shape(a)) < 2 or len(b.shape if ctx.is_tensor(b) else np.shape(b)) < 2:
        raise refuse(node, "a vector operand")
    dtype = str(node.outputs[0].dtype)
    ids = [ctx.operand(v, dtype) for v in (a, b)]
    ctx.op("BATCH_MATMUL", ids, [ctx.out(node.outputs[0])], ctx.options("BatchMatMulOptions"))


@handles("Embedding")
def embedding(ctx: WriteContext, node: Any) -> None:
    op = node.operation
    ids = node_args(node)[0][0]
    if getattr(op, "quantization_mode", None) or getattr(op, "lora_enabled", False):
        raise refuse(node, "LoRA / quantized Embedding")
    index = ctx.get(ids)
    if str(ids.dtype) != "int32":  # Keras casts the ids to int32 itself
        cast = ctx.temp(ids.shape, "int32")
        from converter.tflite_writer.graph import tensor_type

        ctx.op("CAST", [index], [cast], ctx.options("CastOptions", inDataType=tensor_type(str(ids.dtype)),
                                                    outDataType=tensor_type("int32")))
        index = cast
    table = ctx.weight(weights(op.embeddings), "embeddings")
    ctx.op("GATHER", [table, index], [ctx.out(node.outputs[0])], ctx.options("GatherOptions", axis=0))
