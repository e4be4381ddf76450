"""Matrix products, layer normalization and embeddings: the ops that become Dense / LayerNormalization /
Embedding layers with trainable weights."""
from __future__ import annotations

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder.context import KT, BuildContext, call_with_weights
from converter.keras_builder.registry import handles
from converter.layout import identity


def _fusable_bias(ctx: BuildContext, node, units: int) -> tuple[np.ndarray | None, object | None]:
    """If the MatMul's only consumer adds a constant vector of size ``units``, return it (becomes Dense bias)."""
    users = ctx.consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add":
        return None, None
    add = users[0]
    other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
    if other not in ctx.consts:
        return None, None
    bias = np.asarray(ctx.consts[other])
    if bias.size != units or bias.shape[-1] != units:
        return None, None
    return bias.reshape(units), add


def _dense(ctx: BuildContext, node, x: KT, kernel: np.ndarray, bias: np.ndarray | None, weight_name: str) -> KT:
    import keras

    if x.flat_order is not None:
        kernel = kernel[x.flat_order]  # features arrive in channels-last flatten order: permute rows, not data
        x = KT(x.value, x.perm)
    elif x.perm[-1] != x.rank - 1:
        x = ctx.to_identity(x)
    layer = keras.layers.Dense(int(kernel.shape[1]), use_bias=bias is not None,
                               name=ctx.layer_name(node, weight_name))
    weights = [kernel.astype("float32")]
    if bias is not None:
        weights.append(bias.astype("float32"))
    y = call_with_weights(layer, weights, x.value)
    return KT(y, x.perm)


@handles("Gemm")
def gemm(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    alpha = float(ctx.attr(node, "alpha", 1.0))
    beta = float(ctx.attr(node, "beta", 1.0))
    trans_a = int(ctx.attr(node, "transA", 0))
    trans_b = int(ctx.attr(node, "transB", 0))
    a = ctx.get(node.input[0])
    if node.input[1] in ctx.consts and not a.is_const and not trans_a:
        w = ctx.consts[node.input[1]]
        kernel = (w.T if trans_b else w) * alpha
        bias = None
        c = ctx.bias(node, 2)
        if c is not None:
            bias = np.broadcast_to(c * beta, (kernel.shape[1],)).copy() if c.size in (1, kernel.shape[1]) else None
            if bias is None:
                raise UnsupportedError(f"Gemm node {node.name!r}: a bias of shape {c.shape} is not supported")
        return [_dense(ctx, node, a, kernel, bias, node.input[1])]
    a = ctx.to_identity(a)
    b = ctx.to_identity(ctx.get(node.input[1]))
    av = ops.transpose(a.value) if trans_a else a.value
    bv = ops.transpose(b.value) if trans_b else b.value
    y = ops.matmul(av, bv)
    if alpha != 1.0:
        y = ops.multiply(y, alpha)
    if len(node.input) > 2 and node.input[2]:
        c = ctx.get(node.input[2])
        cv = c.value * beta if c.is_const else ops.multiply(c.value, beta)
        y = ops.add(y, cv)
    return [KT(y, (0, 1))]


@handles("MatMul")
def matmul(ctx: BuildContext, node) -> list[KT]:
    from keras import ops

    a = ctx.get(node.input[0])
    b_name = node.input[1]
    if b_name in ctx.consts and not a.is_const and ctx.consts[b_name].ndim == 2 and a.rank >= 2:
        kernel = ctx.consts[b_name]
        bias, add = _fusable_bias(ctx, node, int(kernel.shape[1]))
        weight_name = b_name
        if bias is not None:
            ctx.skipped_nodes.add(add.output[0])
            other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
            weight_name = other if "." in other else b_name
        out = _dense(ctx, node, a, kernel, bias, weight_name)
        if add is not None and bias is not None:
            ctx.env[add.output[0]] = out
        return [out]
    a = ctx.to_identity(a)
    b = ctx.to_identity(ctx.get(b_name))
    return [KT(ops.matmul(a.value, b.value), tuple(range(max(a.rank, b.rank))))]


@handles("LayerNormalization")
def layer_norm(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.materialize(ctx.get(node.input[0]))
    rank = x.rank
    axis = int(ctx.attr(node, "axis", -1)) % rank
    eps = float(ctx.attr(node, "epsilon", 1e-5))
    if len(node.output) > 1 and any(node.output[1:]):
        raise UnsupportedError(f"LayerNormalization node {node.name!r}: mean/inv-std outputs are not supported")
    tail = tuple(range(axis, rank))
    if tuple(x.perm[axis:]) != tail:
        x = ctx.to_identity(x)
    scale = ctx.const(node.input[1], node, "scale")
    bias = ctx.bias(node, 2)
    norm_shape = tuple(ctx.shape(node.input[0]).at_b1[axis:])
    axes = list(range(axis, rank))
    layer = keras.layers.LayerNormalization(axis=axes if len(axes) > 1 else axes[0], epsilon=eps,
                                            center=bias is not None, scale=True,
                                            name=ctx.layer_name(node, node.input[1]))
    weights = [np.broadcast_to(scale, norm_shape).astype("float32")]
    if bias is not None:
        weights.append(np.broadcast_to(bias, norm_shape).astype("float32"))
    y = call_with_weights(layer, weights, x.value)
    return [KT(y, x.perm)]


@handles("Gather")
def gather(ctx: BuildContext, node) -> list[KT]:
    import keras
    from keras import ops

    data_name, idx_name = node.input[0], node.input[1]
    axis = int(ctx.attr(node, "axis", 0))
    if data_name in ctx.consts and (not ctx.is_const(idx_name) or data_name in ctx.parameter_names):
        table = ctx.consts[data_name]
        if axis != 0 or table.ndim != 2:
            raise UnsupportedError(f"Gather node {node.name!r}: lookup into a constant of rank {table.ndim} on axis {axis}")
        idx = ctx.to_identity(ctx.get(idx_name))
        if idx.is_const:  # constant positions into a trainable table: still the Embedding layer
            rows = np.asarray(idx.value)
            idx = KT(ctx.const_tensor(np.where(rows < 0, rows + table.shape[0], rows)), idx.perm)
        layer = keras.layers.Embedding(int(table.shape[0]), int(table.shape[1]), name=ctx.layer_name(node, data_name))
        y = call_with_weights(layer, [table.astype("float32")], idx.value)
        return [KT(y, tuple(range(idx.rank + 1)))]
    x = ctx.get(data_name)
    indices = ctx.const(idx_name, node, "indices")
    real_axis = ctx.axis(x, axis)
    dim = ctx.shape(data_name).dims[axis % x.rank]
    if dim is None:
        raise UnsupportedError(f"Gather node {node.name!r}: gathering along the batch axis is not supported")
    indices = np.where(indices < 0, indices + dim, indices).astype("int32")
    y = ops.take(x.value, indices, axis=real_axis)
    if indices.ndim == 0:
        perm = [p for p in x.perm if p != axis % x.rank]
        return [KT(y, tuple(sorted(perm).index(p) for p in perm))]
    if indices.ndim == 1:
        return [KT(y, x.perm)]
    x = ctx.to_identity(x)
    return [KT(ops.take(x.value, indices, axis=axis % x.rank), tuple(range(x.rank - 1 + indices.ndim)))]


@handles("GatherND")
def gather_nd(ctx: BuildContext, node) -> list[KT]:
    """``GatherND`` whose indices are ``[batch index, constant index...]`` for every batch row -- how an exported
    attention mask reads ``padding_mask[b, kv]`` for each batch row ``b`` -- becomes a gather along the flattened
    non-batch axes with one constant index, shared by every row. Other index patterns are refused."""
    from keras import ops

    if int(ctx.attr(node, "batch_dims", 0)) != 0:
        raise UnsupportedError(f"GatherND node {node.name!r}: batch_dims != 0 is not supported")
    data_name, idx_name = node.input[0], node.input[1]
    bv = ctx.batch_values.get(idx_name)
    rest = _per_row_index(bv) if bv is not None else None
    if rest is None:
        raise UnsupportedError(f"GatherND node {node.name!r}: only indices of the form [batch row, constant...] "
                               "are supported")
    x = ctx.to_identity(ctx.get(data_name))
    dims = ctx.shape(data_name).at_b1
    k = rest.shape[-1]
    if k == 0 or k >= len(dims):
        raise UnsupportedError(f"GatherND node {node.name!r}: index depth {k + 1} for data of rank {len(dims)}")
    inner = tuple(int(d) for d in dims[1:1 + k])
    flat = ops.reshape(x.value, (-1, int(np.prod(inner)), *[int(d) for d in dims[1 + k:]]))
    linear = np.ravel_multi_index(tuple(np.moveaxis(rest, -1, 0)), inner).astype("int32")
    y = ops.take(flat, linear, axis=1)
    return [KT(y, tuple(range(1 + linear.ndim + len(dims) - 1 - k)))]


def _per_row_index(bv) -> np.ndarray | None:
    """For GatherND indices (B, ..., k) whose component 0 is the row's own batch index and whose other components
    are the same for every row: those components (..., k-1) -- checked at both probed batch sizes."""
    rest = None
    for arr, batch in ((np.asarray(bv.at_2), 2), (np.asarray(bv.at_3), 3)):
        if arr.ndim < 2 or arr.shape[0] != batch or arr.dtype.kind not in "iu":
            return None
        rows = np.arange(batch).reshape((batch,) + (1,) * (arr.ndim - 2))
        if not np.array_equal(arr[..., 0], np.broadcast_to(rows, arr.shape[:-1])):
            return None
        tail = arr[..., 1:]
        if not all(np.array_equal(tail[0], tail[b]) for b in range(batch)):
            return None
        if rest is not None and not np.array_equal(rest, tail[0]):
            return None
        rest = tail[0]
    return rest


@handles("GatherElements")
def gather_elements(ctx: BuildContext, node) -> list[KT]:
    """``take_along_axis`` (the same rule); data first cut to the index's extent on the other axes, as ONNX
    allows an index smaller than the data there."""
    from keras import ops

    x = ctx.to_identity(ctx.get(node.input[0]))
    idx = ctx.to_identity(ctx.get(node.input[1]))
    axis = int(ctx.attr(node, "axis", 0)) % x.rank
    data_dims = ctx.shape(node.input[0]).dims
    idx_dims = ctx.shape(node.input[1]).dims
    if data_dims[axis] is None:
        raise UnsupportedError(f"GatherElements node {node.name!r}: gathering along the batch axis is not supported")
    size = int(data_dims[axis])
    if idx.is_const:
        arr = np.asarray(idx.value)
        idx_value = np.where(arr < 0, arr + size, arr).astype("int32")
    else:
        idx_value = ops.where(ops.less(idx.value, 0), ops.add(idx.value, size), idx.value)
    data = x.value
    cut = [slice(None)] * x.rank
    for a, (d, i) in enumerate(zip(data_dims, idx_dims)):
        if a != axis and d is not None and i is not None and i != d:
            cut[a] = slice(0, int(i))
    if any(c != slice(None) for c in cut):
        if x.is_const:
            data = np.asarray(data)[tuple(cut)]
        else:
            data = data[tuple(cut)]
    if isinstance(data, np.ndarray) and not isinstance(idx_value, np.ndarray):
        data = ctx.const_tensor(data)
    return [KT(ops.take_along_axis(data, idx_value, axis=axis), identity(x.rank))]
