"""Source parameters used outside a layer (``x * layer_scale``, ``x + pos_embedding``, a class token expanded to
the batch). Baked in as constants they would still compute the right numbers, but the Keras model would have
fewer trainable weights than the PyTorch one, so each becomes an exact built-in Keras layer holding the parameter:

- a per-channel scale: a 1x1 depthwise convolution without bias;
- an additive (1, S, D) table or a (1, 1, D) token broadcast over the batch: an ``Embedding`` looked up at
  positions 0..S-1 (the Keras ViT examples' position embedding), with the positions derived from a graph input
  so they follow the batch at run time.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.keras_builder.context import KT, BuildContext, call_with_weights
from converter.layout import identity


def as_layer(ctx: BuildContext, node: Any, a: KT, b: KT) -> KT | None:
    """``Mul``/``Add`` of a tensor and a source parameter as a trainable layer, or None to use plain ops."""
    if node.op_type not in ("Mul", "Add"):
        return None
    for tensor, const, name in ((a, b, node.input[1]), (b, a, node.input[0])):
        if tensor.is_const or not const.is_const or name not in ctx.parameter_names:
            continue
        tensor = ctx.materialize(tensor)
        value = np.asarray(ctx.const_for(const.value, tensor), dtype="float32")
        if value.ndim != tensor.rank:
            continue
        if node.op_type == "Mul":
            out = _channel_scale(ctx, node, tensor, value, name)
        else:
            out = _additive_table(ctx, node, tensor, value, name)
        if out is not None:
            return out
    return None


def expand_to_batch(ctx: BuildContext, node: Any, x: KT, target: tuple[int | None, ...]) -> KT:
    """``x`` broadcast to ``target``, whose one ``None`` dim is the batch (a class token: (B, 1, D); an RNN's
    zero initial state: (directions, B, hidden))."""
    from keras import ops

    name = node.input[0]
    axis = target.index(None)
    rest = tuple(1 if d is None else int(d) for d in target)
    value = np.asarray(x.value) if x.is_const else None
    if (value is not None and axis == 0 and name in ctx.parameter_names and len(target) == 3
            and rest[1] == 1 and value.shape == (1, 1, rest[2])):
        return _lookup(ctx, node, value.reshape(1, -1), name, 3)
    zeros = ops.reshape(_batch_zeros(ctx, 1, "float32"), tuple(-1 if i == axis else 1 for i in range(len(target))))
    src = value.astype("float32") if value is not None and value.dtype.kind == "f" else x.value
    return KT(ops.add(zeros, ops.broadcast_to(src, rest)), identity(len(target)))


def _channel_scale(ctx: BuildContext, node: Any, tensor: KT, value: np.ndarray, name: str) -> KT | None:
    import keras

    channels = tuple(tensor.value.shape)[-1]
    if tensor.rank not in (3, 4) or value.shape[-1] != channels or any(d != 1 for d in value.shape[:-1]):
        return None
    if tensor.rank == 4:
        layer = keras.layers.DepthwiseConv2D(1, use_bias=False, name=ctx.layer_name(node, weight=name))
        kernel = value.reshape(1, 1, channels, 1)
    else:
        layer = keras.layers.DepthwiseConv1D(1, use_bias=False, name=ctx.layer_name(node, weight=name))
        kernel = value.reshape(1, channels, 1)
    out = call_with_weights(layer, [kernel], tensor.value)
    return KT(out, tensor.perm)


def _additive_table(ctx: BuildContext, node: Any, tensor: KT, value: np.ndarray, name: str) -> KT | None:
    """``x + p`` with ``p`` of shape (1, S, D) and ``x`` of shape (B, S, D)."""
    from keras import ops

    shape = tuple(tensor.value.shape)
    if tensor.rank != 3 or value.shape[0] != 1 or value.shape[1:] != shape[1:] or ctx.batch_source is None:
        return None
    table = _lookup(ctx, node, value[0], name, 3)
    return KT(ops.add(tensor.value, table.value), tensor.perm)


def _lookup(ctx: BuildContext, node: Any, table: np.ndarray, name: str, rank: int) -> KT:
    """Rows 0..S-1 of a trainable ``Embedding`` holding ``table`` (S, D), for every batch element: (B, S, D)."""
    import keras
    from keras import ops

    rows = table.shape[0]
    positions = ops.add(ops.cast(_batch_zeros(ctx, 2, "float32"), "int32"), np.arange(rows, dtype="int32")[None])
    layer = keras.layers.Embedding(rows, table.shape[1], name=ctx.layer_name(node, weight=name))
    out = call_with_weights(layer, [table.astype("float32")], positions)
    return KT(out, identity(rank))


def _batch_zeros(ctx: BuildContext, rank: int, dtype: str) -> Any:
    """Zeros of shape (B, 1, ..., 1) taken from a graph input; exact whatever the input holds (NaN included)."""
    from keras import ops

    batch = ctx.batch_source
    first = batch[(slice(None),) + (slice(0, 1),) * (len(batch.shape) - 1)]
    return ops.cast(ops.reshape(ops.zeros_like(first), (-1,) + (1,) * (rank - 1)), dtype)
