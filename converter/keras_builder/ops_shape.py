"""Ops that move data around without arithmetic: reshapes, transposes, slicing, reductions, softmax, padding.

These are where layout bugs live, so each handler either remaps axes through the tensor's permutation or falls
back to the logical (channels-first) order first. Reshape targets come from the measured static shapes, with
the batch dimension kept dynamic.
"""
from __future__ import annotations

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder import params
from converter.keras_builder.context import KT, BuildContext, drop_axes
from converter.keras_builder.registry import handles
from converter.layout import channels_last_perm, identity


def _reshape_to(ctx: BuildContext, node, x: KT, out_name: str) -> KT:
    import keras
    from keras import ops

    target = ctx.shape(out_name).dims
    src = ctx.shape(node.input[0]).dims
    n_dynamic = sum(d is None for d in target)
    if n_dynamic == 0:
        return KT(ops.reshape(x.value, tuple(int(d) for d in target)), identity(len(target)))
    batch_kept = bool(src) and ctx.shape(out_name).at_b1[0] == ctx.shape(node.input[0]).at_b1[0]
    if n_dynamic == 1 and target[0] is None and src and src[0] is None and batch_kept:
        # A batch-preserving reshape: the Keras layer. (Attention folds heads into the batch axis, B*H -> B, H:
        # there the leading dim changes meaning and only a plain reshape with -1 is right.)
        return KT(keras.layers.Reshape(tuple(int(d) for d in target[1:]), name=ctx.layer_name(node))(x.value),
                  identity(len(target)))
    if n_dynamic == 1:
        return KT(ops.reshape(x.value, tuple(-1 if d is None else int(d) for d in target)), identity(len(target)))
    raise UnsupportedError(f"{node.op_type} node {node.name!r}: reshape to {target} with several batch-dependent dims")


@handles("Reshape")
def reshape(ctx: BuildContext, node) -> list[KT]:
    x = ctx.get(node.input[0])
    if x.flat_order is not None or not ctx.same_memory_order(node.input[0], x.perm):
        x = ctx.to_identity(x)
    return [_reshape_to(ctx, node, x, node.output[0])]


@handles("Flatten")
def flatten(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.get(node.input[0])
    axis = int(ctx.attr(node, "axis", 1)) % max(x.rank, 1)
    if x.flat_order is None and not ctx.same_memory_order(node.input[0], x.perm):
        users = ctx.consumers.get(node.output[0], [])
        dense_only = users and all(u.op_type in ("Gemm", "MatMul") and u.input[0] == node.output[0]
                                   and u.input[1] in ctx.consts for u in users)
        if axis == 1 and dense_only:
            # Flatten channels-last and let the Dense layer permute its kernel rows: no transpose at run time.
            dims = ctx.shape(node.input[0]).at_b1
            logical_index = np.arange(int(np.prod(dims[1:]))).reshape(dims[1:])
            order = np.transpose(logical_index, [p - 1 for p in x.perm[1:]]).reshape(-1)
            y = keras.layers.Flatten(data_format="channels_last", name=ctx.layer_name(node))(x.value)
            return [KT(y, (0, 1), flat_order=order)]
        x = ctx.to_identity(x)
    if axis == 1:
        y = keras.layers.Flatten(data_format="channels_last", name=ctx.layer_name(node))(x.value)
        return [KT(y, (0, 1))]
    return [_reshape_to(ctx, node, x, node.output[0])]


@handles("Transpose")
def transpose(ctx: BuildContext, node) -> list[KT]:
    x = ctx.materialize(ctx.get(node.input[0]))
    q = ctx.attr(node, "perm", None) or list(reversed(range(x.rank)))
    q_inv = [0] * len(q)
    for j, a in enumerate(q):
        q_inv[a] = j
    # actual = in_logical.T(p), out_logical = in_logical.T(q)  =>  actual = out_logical.T(q_inv[p])
    return [KT(x.value, tuple(q_inv[p] for p in x.perm))]


@handles("Concat")
def concat(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    parts = [ctx.materialize(ctx.get(n)) for n in node.input if n]
    ref = next((p for p in parts if not p.is_const), None)
    if ref is None:
        raise UnsupportedError(f"Concat node {node.name!r}: all inputs constant but not folded")
    axis = int(ctx.attr(node, "axis")) % ref.rank
    vals = []
    for p in parts:
        if p.is_const:
            vals.append(np.transpose(p.value, ref.perm))
        else:
            vals.append(ctx.to_perm(p, ref.perm).value)
    return [KT(ops.concatenate(vals, axis=ref.perm.index(axis)), ref.perm)]


@handles("Split")
def split(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    axis = int(ctx.attr(node, "axis", 0)) % x.rank
    dim = ctx.shape(node.input[0]).dims[axis]
    if dim is None:
        raise UnsupportedError(f"Split node {node.name!r}: splitting the batch axis is not supported")
    sizes = ctx.optional_const(node, 1, "split sizes")
    if sizes is None:
        sizes = ctx.attr(node, "split", None)
    n = len(node.output)
    if sizes is None:
        step = -(-dim // n)
        sizes = [min(step, dim - i * step) for i in range(n)]
    bounds = np.cumsum([int(s) for s in sizes])[:-1].tolist()
    parts = ops.split(x.value, bounds, axis=ctx.axis(x, axis))
    return [KT(p, x.perm) for p in parts]


@handles("Slice")
def slice_(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    dims = ctx.shape(node.input[0]).dims
    starts = ctx.const(node.input[1], node, "starts")
    ends = ctx.const(node.input[2], node, "ends")
    axes = ctx.optional_const(node, 3, "axes")
    steps = ctx.optional_const(node, 4, "steps")
    axes = list(range(len(starts))) if axes is None else [int(a) % x.rank for a in axes]
    steps = [1] * len(starts) if steps is None else [int(s) for s in steps]
    index: list[object] = [slice(None)] * x.rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        if dims[a] is None:
            raise UnsupportedError(f"Slice node {node.name!r}: slicing the batch axis is not supported")
        start, stop, step = slice(int(s), int(e), st).indices(int(dims[a]))
        if step != 1:
            idx = np.arange(start, stop, step, dtype="int32")
            x = KT(ops.take(x.value, idx, axis=ctx.axis(x, a)), x.perm)
            continue
        index[ctx.axis(x, a)] = (start, stop)
    if any(isinstance(i, tuple) for i in index):
        actual_dims = [ctx.shape(node.output[0]).dims[p] for p in x.perm]
        begin = [i[0] if isinstance(i, tuple) else 0 for i in index]
        size = [(i[1] - i[0]) if isinstance(i, tuple) else (-1 if actual_dims[k] is None else int(actual_dims[k]))
                for k, i in enumerate(index)]
        return [KT(ops.slice(x.value, begin, size), x.perm)]
    return [x]


def _axes_input(ctx: BuildContext, node, attr_name: str = "axes", index: int = 1) -> list[int] | None:
    v = ctx.attr(node, attr_name, None)
    if v is not None:
        return [int(a) for a in v]
    arr = ctx.optional_const(node, index, "axes")
    return None if arr is None else [int(a) for a in np.asarray(arr).reshape(-1)]


@handles("Squeeze")
def squeeze(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    axes = _axes_input(ctx, node)
    dims = ctx.shape(node.input[0]).at_b1
    axes = [i for i, d in enumerate(dims) if d == 1] if axes is None else [a % x.rank for a in axes]
    real = sorted(ctx.axis(x, a) for a in axes)
    y = ops.squeeze(x.value, axis=tuple(real)) if real else x.value
    return [KT(y, drop_axes(x.perm, axes))]


@handles("Unsqueeze")
def unsqueeze(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.to_identity(ctx.get(node.input[0]))
    axes = _axes_input(ctx, node)
    out_rank = x.rank + len(axes or [])
    y = x.value
    for a in sorted(a % out_rank for a in axes or []):
        y = ops.expand_dims(y, a)
    return [KT(y, identity(out_rank))]


@handles("Softmax", "LogSoftmax")
def softmax(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    default = -1 if ctx.opset >= 13 else 1
    axis = int(ctx.attr(node, "axis", default)) % x.rank
    if ctx.opset < 13 and axis != x.rank - 1:
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: opset<13 softmax over axes {axis}.. is not supported")
    fn = ops.softmax if node.op_type == "Softmax" else ops.log_softmax
    return [KT(fn(x.value, axis=ctx.axis(x, axis)), x.perm)]


_REDUCERS = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min", "ReduceProd": "prod"}


@handles(*_REDUCERS)
def reduce(ctx: BuildContext, node) -> list[KT]:
    import keras
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    use_input = node.op_type == "ReduceSum" and ctx.opset >= 13 or ctx.opset >= 18
    axes = _axes_input(ctx, node, index=1) if use_input else [int(a) for a in ctx.attr(node, "axes", [])] or None
    keep = bool(ctx.attr(node, "keepdims", 1))
    if axes is None:
        if int(ctx.attr(node, "noop_with_empty_axes", 0)):
            return [x]
        axes = list(range(x.rank))
    axes = sorted(a % x.rank for a in axes)
    fn = _REDUCERS[node.op_type]
    if (fn == "mean" and x.rank == 4 and axes == [2, 3] and x.perm == channels_last_perm(4)):
        layer = keras.layers.GlobalAveragePooling2D(keepdims=keep, data_format="channels_last",
                                                    name=ctx.layer_name(node))
        y = layer(x.value)
        return [KT(y, x.perm if keep else (0, 1))]
    real = tuple(sorted(ctx.axis(x, a) for a in axes))
    y = getattr(ops, fn)(x.value, axis=real, keepdims=keep)
    return [KT(y, x.perm if keep else drop_axes(x.perm, axes))]


@handles("Pad")
def pad(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    mode = ctx.attr(node, "mode", "constant")
    pads = ctx.attr(node, "pads", None)
    if pads is None:
        pads = ctx.const(node.input[1], node, "pads")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    value = ctx.optional_const(node, 2, "pad value")
    axes = ctx.optional_const(node, 3, "axes")
    axes = list(range(x.rank)) if axes is None else [int(a) % x.rank for a in axes]
    n = len(axes)
    logical = {a: (pads[i], pads[i + n]) for i, a in enumerate(axes)}
    if any(b < 0 or e < 0 for b, e in logical.values()):
        raise UnsupportedError(f"Pad node {node.name!r}: negative padding (cropping) is not supported")
    width = [logical.get(p, (0, 0)) for p in x.perm]
    keras_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}.get(mode)
    if keras_mode is None:
        raise UnsupportedError(f"Pad node {node.name!r}: mode {mode!r} is not supported")
    kwargs = {"constant_values": float(np.asarray(value).reshape(-1)[0])} if (value is not None and mode == "constant") else {}
    return [KT(ops.pad(x.value, width, mode=keras_mode, **kwargs), x.perm)]


@handles("Resize", "Upsample")
def resize(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.materialize(ctx.get(node.input[0]))
    mode = ctx.attr(node, "mode", "nearest")
    coord = ctx.attr(node, "coordinate_transformation_mode", "half_pixel")
    node_nearest = None
    if node.op_type == "Upsample" or ctx.opset < 11:  # before opset 11 only one rule existed: asymmetric, floor
        coord, node_nearest = "asymmetric", "floor"
    src = ctx.shape(node.input[0]).at_b1
    dst = ctx.shape(node.output[0]).at_b1
    if x.rank != 4 or src[:2] != dst[:2] or any(d % s for s, d in zip(src[2:], dst[2:])):
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: only integer-factor 2-D spatial resizing is supported")
    size = (dst[2] // src[2], dst[3] // src[3])
    if mode == "nearest":
        nearest = node_nearest or ctx.attr(node, "nearest_mode", "round_prefer_floor")
        if not (coord == "asymmetric" and nearest == "floor") and size != (1, 1):
            raise UnsupportedError(f"{node.op_type} node {node.name!r}: nearest resize with {coord}/{nearest} is not supported")
        interp = "nearest"
    elif mode == "linear" and coord in ("half_pixel", "pytorch_half_pixel"):
        interp = "bilinear"
    else:
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: {mode} resize with {coord} is not supported")
    x = ctx.to_perm(x, channels_last_perm(4))
    y = keras.layers.UpSampling2D(size=size, interpolation=interp, data_format="channels_last",
                                  name=ctx.layer_name(node))(x.value)
    return [KT(y, x.perm)]


@handles("Expand")
def expand(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.to_identity(ctx.get(node.input[0]))
    target = ctx.shape(node.output[0]).dims
    src_dims = ctx.shape(node.input[0]).dims
    if not x.is_const and len(src_dims) == len(target) and all(
            (s is None) == (t is None) for s, t in zip(src_dims, target)):
        # A run-time tensor that already has the batch (GQA's repeat_kv: (B, kv, 1, S, D) -> (B, kv, n, S, D)):
        # broadcast against zeros of the target's other dims.
        rest = tuple(1 if d is None else int(d) for d in target)
        if x.value.dtype == "bool":
            return [KT(ops.logical_or(x.value, np.zeros(rest, bool)), identity(len(target)))]
        return [KT(ops.add(x.value, np.zeros(rest, str(x.value.dtype))), identity(len(target)))]
    if sum(d is None for d in target) == 1 and ctx.batch_source is not None:
        # ViT's class token expanded to the batch; an RNN's zero initial state (directions, batch, hidden)
        return [params.expand_to_batch(ctx, node, x, target)]
    if any(d is None for d in target):
        raise UnsupportedError(f"Expand node {node.name!r}: expanding to a batch-dependent shape is not supported")
    return [KT(ops.broadcast_to(x.value, tuple(int(d) for d in target)), identity(len(target)))]


@handles("Shape", "Size")
def shape(ctx: BuildContext, node) -> list[KT]:
    raise UnsupportedError(
        f"{node.op_type} node {node.name!r}: the model computes with its own batch-dependent shape; "
        "export with a fixed batch (--static-batch) to convert it"
    )


@handles("Einsum")
def einsum(ctx: BuildContext, node) -> list[KT]:
    """``keras.ops.einsum`` on the operands in logical order (the equation names logical axes)."""
    from keras import ops

    equation = ctx.attr(node, "equation").replace(" ", "")
    operands = [ctx.to_identity(ctx.get(n)) for n in node.input if n]
    if all(o.is_const for o in operands):
        raise UnsupportedError(f"Einsum node {node.name!r}: all operands constant but not folded")
    out_rank = len(equation.split("->", 1)[1]) if "->" in equation else None
    y = ops.einsum(equation, *[o.value for o in operands])
    return [KT(y, identity(out_rank if out_rank is not None else len(y.shape)))]


@handles("Trilu")
def trilu(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.to_identity(ctx.get(node.input[0]))
    k = ctx.optional_const(node, 1, "diagonal offset")
    k = 0 if k is None else int(np.asarray(k).reshape(()))
    fn = ops.triu if int(ctx.attr(node, "upper", 1)) else ops.tril
    return [KT(fn(x.value, k=k), x.perm)]


@handles("CumSum")
def cumsum(ctx: BuildContext, node) -> list[KT]:
    """Cumulative sum (RoBERTa-style position ids from the padding mask); ``exclusive``/``reverse`` as in ONNX."""
    from keras import ops

    x = ctx.materialize(ctx.get(node.input[0]))
    axis = int(np.asarray(ctx.const(node.input[1], node, "axis")).reshape(())) % x.rank
    real = ctx.axis(x, axis)
    v = x.value
    reverse = int(ctx.attr(node, "reverse", 0))
    if reverse:
        v = ops.flip(v, axis=real)
    y = ops.cumsum(v, axis=real)
    if int(ctx.attr(node, "exclusive", 0)):
        y = ops.subtract(y, v)
    if reverse:
        y = ops.flip(y, axis=real)
    return [KT(y, x.perm)]


@handles("Tile")
def tile(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.to_identity(ctx.get(node.input[0]))
    repeats = [int(r) for r in np.asarray(ctx.const(node.input[1], node, "repeats")).reshape(-1)]
    if repeats and repeats[0] != 1 and ctx.shape(node.input[0]).dims[0] is None:
        raise UnsupportedError(f"Tile node {node.name!r}: tiling the batch axis is not supported")
    return [KT(ops.tile(x.value, repeats), x.perm)]


@handles("ArgMax", "ArgMin")
def arg_reduce(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    x = ctx.to_identity(ctx.get(node.input[0]))
    axis = int(ctx.attr(node, "axis", 0)) % x.rank
    keep = bool(ctx.attr(node, "keepdims", 1))
    if int(ctx.attr(node, "select_last_index", 0)):
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: select_last_index=1 is not supported")
    fn = ops.argmax if node.op_type == "ArgMax" else ops.argmin
    y = ops.cast(fn(x.value, axis=axis, keepdims=keep), "int64")
    return [KT(y, identity(x.rank if keep else x.rank - 1))]
