"""Shape ops: reshape-like ops (written as RESHAPE to the Keras output shape), transpose, concatenation,
gather and slicing."""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.tflite_writer.context import WriteContext, node_args, refuse
from converter.tflite_writer.registry import handles


@handles("Reshape", "Flatten", "ExpandDims", "Squeeze")
def reshape(ctx: WriteContext, node: Any) -> None:
    """Every reshape-like op ends in the shape Keras inferred; one dynamic (batch) dimension becomes ``-1``."""
    x = node_args(node)[0][0]
    out = node.outputs[0]
    if not ctx.is_tensor(x):
        raise refuse(node, "a constant operand")
    if sum(d is None for d in out.shape) > 1:
        raise refuse(node, f"output shape {tuple(out.shape)} with more than one dynamic dimension")
    shape = np.asarray([-1 if d is None else d for d in out.shape], np.int32)
    ctx.op("RESHAPE", [ctx.get(x), ctx.graph.const(shape)], [ctx.out(out)],
           ctx.options("ReshapeOptions", newShape=shape.copy()))


@handles("Transpose", "Permute")
def transpose(ctx: WriteContext, node: Any) -> None:
    op = node.operation
    x = node_args(node)[0][0]
    rank = len(x.shape)
    if type(op).__name__ == "Permute":
        perm = [0, *op.dims]
    else:
        perm = list(op.axes) if op.axes is not None else list(range(rank))[::-1]
    perm = [p % rank for p in perm]
    ctx.op("TRANSPOSE", [ctx.get(x), ctx.graph.const(np.asarray(perm, np.int32))], [ctx.out(node.outputs[0])])


@handles("Concatenate")
def concatenate(ctx: WriteContext, node: Any) -> None:
    args, _ = node_args(node)
    parts = list(args[0])
    out = node.outputs[0]
    axis = int(node.operation.axis) % len(out.shape)
    dtype = str(out.dtype)
    ids = [ctx.operand(p, dtype) for p in parts]
    ctx.op("CONCATENATION", ids, [ctx.out(out)], ctx.options("ConcatenationOptions", axis=axis))


@handles("Take")
def take(ctx: WriteContext, node: Any) -> None:
    args, kwargs = node_args(node)
    x, indices = args[0], args[1] if len(args) > 1 else kwargs["indices"]
    axis = node.operation.axis
    if axis is None:
        raise refuse(node, "axis=None (flattened take)")
    axis = int(axis) % len(x.shape)
    if ctx.is_tensor(indices):
        index = ctx.get(indices)
        if str(indices.dtype) not in ("int32", "int64"):
            raise refuse(node, f"{indices.dtype} indices")
    else:
        values = np.asarray(indices)
        if values.dtype.kind not in "iu":
            raise refuse(node, f"{values.dtype} indices")
        size = x.shape[axis]
        if (values < 0).any() and size is None:
            raise refuse(node, "negative indices on a dynamic axis")
        index = ctx.graph.const(np.where(values < 0, values + (size or 0), values).astype(np.int32))
    ctx.op("GATHER", [ctx.get(x), index], [ctx.out(node.outputs[0])], ctx.options("GatherOptions", axis=axis))


@handles("GetItem")
def get_item(ctx: WriteContext, node: Any) -> None:
    """Basic indexing (slices, integers, ``...``) as one STRIDED_SLICE; open ends become mask bits so a dynamic
    batch dimension stays dynamic."""
    args, _ = node_args(node)
    x, key = args[0], args[1]
    rank = len(x.shape)
    key = list(key) if isinstance(key, (tuple, list)) else [key]
    if sum(k is Ellipsis for k in key) > 1 or any(k is None for k in key) or any(ctx.is_tensor(k) for k in key):
        raise refuse(node, "advanced indexing")
    if Ellipsis in key:
        at = key.index(Ellipsis)
        key = key[:at] + [slice(None)] * (rank - len(key) + 1) + key[at + 1:]
    key += [slice(None)] * (rank - len(key))
    if len(key) != rank:
        raise refuse(node, "more indices than dimensions")
    begin, end, strides = [], [], []
    begin_mask = end_mask = shrink = 0
    for axis, k in enumerate(key):
        if isinstance(k, slice):
            step = 1 if k.step is None else int(k.step)
            begin.append(0 if k.start is None else int(k.start))
            end.append(0 if k.stop is None else int(k.stop))
            strides.append(step)
            begin_mask |= (k.start is None) << axis
            end_mask |= (k.stop is None) << axis
        elif isinstance(k, (int, np.integer)):
            begin.append(int(k))
            end.append(int(k) + 1 if int(k) != -1 else 0)
            end_mask |= (int(k) == -1) << axis
            strides.append(1)
            shrink |= 1 << axis
        else:
            raise refuse(node, f"index {k!r}")
    consts = [ctx.graph.const(np.asarray(v, np.int32)) for v in (begin, end, strides)]
    opts = ctx.options("StridedSliceOptions", beginMask=begin_mask, endMask=end_mask, shrinkAxisMask=shrink)
    ctx.op("STRIDED_SLICE", [ctx.get(x), *consts], [ctx.out(node.outputs[0])], opts)


@handles("Split")
def split(ctx: WriteContext, node: Any) -> None:
    """SPLIT_V with the section sizes Keras inferred for each output (static along the split axis)."""
    x = node_args(node)[0][0]
    axis = int(node.operation.axis) % len(x.shape)
    sizes = [o.shape[axis] for o in node.outputs]
    if any(s is None for s in sizes):
        raise refuse(node, "a split along a dynamic axis")
    outs = [ctx.out(o) for o in node.outputs]
    ctx.op("SPLIT_V", [ctx.get(x), ctx.graph.const(np.asarray(sizes, np.int32)), ctx.graph.const(np.int32(axis))],
           outs, ctx.options("SplitVOptions", numSplits=len(outs)))


@handles("Stack")
def stack(ctx: WriteContext, node: Any) -> None:
    parts = list(node_args(node)[0][0])
    out = node.outputs[0]
    axis = int(node.operation.axis) % len(out.shape)
    ids = [ctx.operand(p, str(out.dtype)) for p in parts]
    ctx.op("PACK", ids, [ctx.out(out)], ctx.options("PackOptions", valuesCount=len(ids), axis=axis))


@handles("Flip")
def flip(ctx: WriteContext, node: Any) -> None:
    x = node_args(node)[0][0]
    axis = node.operation.axis
    axes = list(range(len(x.shape))) if axis is None else [axis] if isinstance(axis, int) else list(axis)
    axes = [a % len(x.shape) for a in axes]
    ctx.op("REVERSE_V2", [ctx.get(x), ctx.graph.const(np.asarray(axes, np.int32))], [ctx.out(node.outputs[0])])


@handles("Slice")
def slice_(ctx: WriteContext, node: Any) -> None:
    """``keras.ops.slice(x, start, shape)`` with constant starts: SLICE (a ``-1`` size runs to the end)."""
    args, kwargs = node_args(node)
    x = args[0]
    start = args[1] if len(args) > 1 else kwargs.get("start_indices")
    if ctx.is_tensor(start):
        raise refuse(node, "tensor start indices")
    size = [-1 if s is None else int(s) for s in node.outputs[0].shape]
    begin = np.asarray(start, np.int32).reshape(-1)
    ctx.op("SLICE", [ctx.get(x), ctx.graph.const(begin), ctx.graph.const(np.asarray(size, np.int32))],
           [ctx.out(node.outputs[0])])


_REDUCE = {"Mean": "MEAN", "Sum": "SUM", "Max": "REDUCE_MAX", "Min": "REDUCE_MIN", "Prod": "REDUCE_PROD"}


@handles(*_REDUCE)
def reduce(ctx: WriteContext, node: Any) -> None:
    args, kwargs = node_args(node)
    x = args[0]
    op = node.operation
    axis = getattr(op, "axis", kwargs.get("axis"))
    rank = len(x.shape)
    axes = list(range(rank)) if axis is None else [axis] if isinstance(axis, int) else list(axis)
    keep = bool(getattr(op, "keepdims", kwargs.get("keepdims", False)))
    if getattr(op, "initial", None) is not None:
        raise refuse(node, "initial=")
    ctx.op(_REDUCE[type(op).__name__], [ctx.get(x), ctx.graph.const(np.asarray([a % rank for a in axes], np.int32))],
           [ctx.out(node.outputs[0])], ctx.options("ReducerOptions", keepDims=keep))
