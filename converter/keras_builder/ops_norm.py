"""Normalization: BatchNormalization, and InstanceNormalization alone or as the chain ``nn.GroupNorm`` exports."""
from __future__ import annotations

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder.context import KT, BuildContext, call_with_weights, scope_of
from converter.keras_builder.registry import handles
from converter.layout import channels_last_perm


@handles("BatchNormalization")
def batch_norm(ctx: BuildContext, node) -> list[KT]:
    import keras

    if int(ctx.attr(node, "training_mode", 0)):
        raise UnsupportedError(f"BatchNormalization node {node.name!r} is in training mode; export in eval mode")
    x = ctx.get(node.input[0])
    scale, bias, mean, var = (ctx.const(node.input[i], node, what)
                              for i, what in ((1, "scale"), (2, "bias"), (3, "running mean"), (4, "running var")))
    eps = float(ctx.attr(node, "epsilon", 1e-5))
    momentum = float(ctx.attr(node, "momentum", 0.9))
    if x.rank >= 3 and x.perm == tuple(range(x.rank)) and x.rank in (4, 5):
        x = ctx.to_perm(x, channels_last_perm(x.rank))
    x = ctx.materialize(x)
    axis = ctx.axis(x, 1)
    layer = keras.layers.BatchNormalization(axis=axis, epsilon=eps, momentum=momentum,
                                            name=ctx.layer_name(node, node.input[1]))
    y = call_with_weights(layer, [a.astype("float32") for a in (scale, bias, mean, var)], x.value, training=False)
    return [KT(y, x.perm)]


@handles("InstanceNormalization")
def instance_norm(ctx: BuildContext, node) -> list[KT]:
    """InstanceNorm is GroupNorm with one channel per group: ``keras.layers.GroupNormalization(groups=C)``.

    ``nn.GroupNorm`` exports as ``Reshape(N, G, -1) -> InstanceNormalization(ones, zeros) -> Reshape back -> Mul
    weight -> Add bias``; that chain becomes one ``GroupNormalization(groups=G)`` holding the module's weight and
    bias (see ``_group_norm_chain``)."""
    import keras

    eps = float(ctx.attr(node, "epsilon", 1e-5))
    chain = _group_norm_chain(ctx, node)
    if chain is not None:
        source, groups, gamma, beta, last, weight_name = chain
        x = ctx.get(source)
        rank = x.rank
        if rank in (4, 5) and x.perm == tuple(range(rank)):
            x = ctx.to_perm(x, channels_last_perm(rank))
        x = ctx.materialize(x)
        layer = keras.layers.GroupNormalization(groups=groups, axis=ctx.axis(x, 1), epsilon=eps,
                                                center=beta is not None, scale=gamma is not None,
                                                name=ctx.layer_name(node, weight_name))
        y = call_with_weights(layer, [a.astype("float32") for a in (gamma, beta) if a is not None], x.value)
        out = KT(y, x.perm)
        for skipped in last:
            ctx.skipped_nodes.add(skipped)
        ctx.env[last[-1]] = out
        return [out]
    x = ctx.get(node.input[0])
    scale = ctx.const(node.input[1], node, "scale")
    bias = ctx.const(node.input[2], node, "bias")
    rank = x.rank
    if rank < 3:
        raise UnsupportedError(f"InstanceNormalization node {node.name!r}: rank {rank} input")
    if x.perm == tuple(range(rank)) and rank in (4, 5):
        x = ctx.to_perm(x, channels_last_perm(rank))
    x = ctx.materialize(x)
    channels = int(ctx.shape(node.input[0]).at_b1[1])
    layer = keras.layers.GroupNormalization(groups=channels, axis=ctx.axis(x, 1), epsilon=eps,
                                            name=ctx.layer_name(node, node.input[1]))
    y = call_with_weights(layer, [np.asarray(scale, "float32").reshape(channels),
                                  np.asarray(bias, "float32").reshape(channels)], x.value)
    return [KT(y, x.perm)]


def _group_norm_chain(ctx: BuildContext, node):
    """Match ``x -> Reshape(N, G, L) -> InstanceNorm(ones, zeros) -> Reshape(x's shape) [-> Mul w] [-> Add b]``.

    Returns (x's name, G, gamma (C,) or None, beta (C,) or None, outputs the fused layer replaces (the last one is the
    chain's result), the weight's name) or None. Exact: per sample, each group of C/G consecutive channels is
    normalized over its channels and positions together, which is what GroupNormalization(groups=G) computes."""
    pre = ctx.nodes_by_output.get(node.input[0])
    if pre is None or pre.op_type != "Reshape":
        return None
    src = pre.input[0]
    if src not in ctx.shapes or src in ctx.consts:
        return None
    in_shape = ctx.shape(src).at_b1
    grouped = ctx.shape(node.input[0]).at_b1
    if len(in_shape) < 3 or len(grouped) != 3 or grouped[0] != in_shape[0]:
        return None
    groups, channels = int(grouped[1]), int(in_shape[1])
    if channels % groups or int(np.prod(in_shape[1:])) != groups * int(grouped[2]):
        return None
    scale, _ = _const_with_origin(ctx, node.input[1])
    bias, _ = _const_with_origin(ctx, node.input[2])
    if scale is None or bias is None or not np.all(scale == 1) or np.any(bias):
        return None
    users = ctx.consumers.get(node.output[0], [])
    if len(users) != 1 or users[0].op_type != "Reshape" or ctx.shape(users[0].output[0]).at_b1 != in_shape:
        return None
    post = users[0]
    skipped = [post.output[0]]
    gamma = beta = None
    weight_name = None
    per_channel = (1, channels) + (1,) * (len(in_shape) - 2)

    def channel_const(binary, prev: str):
        other = binary.input[1] if binary.input[0] == prev else binary.input[0]
        value, origin = _const_with_origin(ctx, other)
        if value is None or value.size != channels or value.ndim > len(in_shape):
            return None, origin
        if value.reshape((1,) * (len(in_shape) - value.ndim) + value.shape).shape != per_channel:
            return None, origin
        return value.reshape(channels).astype("float32"), origin

    # A non-parameter all-ones scale / all-zeros shift is the exporter's filler for affine=False: no weight. The
    # exporter folds Unsqueeze(weight) into a new constant, so a parameter is also recognised by the module the
    # Mul/Add belongs to (its name scope) having ``weight`` / ``bias`` parameters: a fresh GroupNorm's are 1 and 0.
    def owned(binary, leaf: str) -> str | None:
        module = scope_of(binary)[0]
        return f"{module}.{leaf}" if module and f"{module}.{leaf}" in ctx.parameter_names else None

    nxt = ctx.consumers.get(post.output[0], [])
    if len(nxt) == 1 and nxt[0].op_type == "Mul":
        value, name = channel_const(nxt[0], post.output[0])
        if value is not None:
            param = name if name in ctx.parameter_names else owned(nxt[0], "weight")
            if param or not np.all(value == 1):
                gamma = value
                weight_name = param
            skipped.append(nxt[0].output[0])
            after = ctx.consumers.get(nxt[0].output[0], [])
            if len(after) == 1 and after[0].op_type == "Add":
                value, name = channel_const(after[0], nxt[0].output[0])
                if value is not None:
                    if name in ctx.parameter_names or owned(after[0], "bias") or np.any(value):
                        beta = value
                    skipped.append(after[0].output[0])
    return src, groups, gamma, beta, skipped, weight_name


def _const_with_origin(ctx: BuildContext, name: str) -> tuple[np.ndarray | None, str]:
    """A constant's value and the initializer it was folded from through shape-only ops (Unsqueeze, Reshape),
    so a layer holding it can be named after the source parameter."""
    if not ctx.has(name) or not ctx.get(name).is_const:
        return None, name
    origin = name
    while origin not in ctx.consts:
        producer = ctx.nodes_by_output.get(origin)
        if producer is None or producer.op_type not in ("Unsqueeze", "Reshape", "Identity", "Cast") or not producer.input:
            break
        origin = producer.input[0]
    return np.asarray(ctx.get(name).value), origin
