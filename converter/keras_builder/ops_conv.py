"""Convolution, normalization and pooling: the ops that become weighted / spatial Keras layers."""
from __future__ import annotations

import math

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder.context import KT, BuildContext, call_with_weights, scope_of
from converter.keras_builder.registry import handles
from converter.layout import channels_last_perm


def _spatial_padding(ctx: BuildContext, node, spatial: int, kernel, strides, dilations):
    """Return (keras padding mode, explicit (begin, end) pairs or None) that reproduce the ONNX padding exactly."""
    auto_pad = ctx.attr(node, "auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return "valid", None
    if auto_pad == "SAME_UPPER":
        return "same", None  # TF 'same' puts the extra pixel at the end, as SAME_UPPER does
    if auto_pad == "SAME_LOWER":
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: auto_pad SAME_LOWER has no Keras equivalent")
    pads = list(ctx.attr(node, "pads", [0] * (2 * spatial)))
    begins, ends = pads[:spatial], pads[spatial:]
    if not any(pads):
        return "valid", None
    same_ok = all(s == 1 for s in strides) and all(
        b + e == d * (k - 1) and b == (b + e) // 2 and e == (b + e) - (b + e) // 2
        for b, e, k, d in zip(begins, ends, kernel, dilations)
    )
    if same_ok:
        return "same", None
    return "valid", tuple(zip(begins, ends))


def _pad_layer(keras, spatial: int, pairs, name: str):
    cls = {1: keras.layers.ZeroPadding1D, 2: keras.layers.ZeroPadding2D, 3: keras.layers.ZeroPadding3D}[spatial]
    if spatial == 1:
        return cls(padding=pairs[0], name=name)
    return cls(padding=tuple(pairs), data_format="channels_last", name=name)


@handles("Conv")
def conv(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.get(node.input[0])
    w = ctx.const(node.input[1], node, "weights")
    b = ctx.bias(node, 2)
    rank = w.ndim
    spatial = rank - 2
    if spatial not in (1, 2, 3):
        raise UnsupportedError(f"Conv node {node.name!r}: {spatial}-D convolution is not supported")
    kernel = tuple(int(k) for k in w.shape[2:])
    strides = tuple(ctx.attr(node, "strides", [1] * spatial))
    dilations = tuple(ctx.attr(node, "dilations", [1] * spatial))
    group = int(ctx.attr(node, "group", 1))
    x = ctx.to_perm(x, channels_last_perm(rank))
    c_in = int(ctx.shape(node.input[0]).at_b1[1])
    out_ch = int(w.shape[0])
    mode, pairs = _spatial_padding(ctx, node, spatial, kernel, strides, dilations)
    # Keras refuses stride > 1 with dilation > 1. Exact instead: the dilated convolution at stride 1, then every
    # s-th output (a size-1 pooling with stride s): a strided window starts exactly at the stride-1 window s*i.
    subsample = strides if any(s > 1 for s in strides) and any(d > 1 for d in dilations) else None
    if subsample is not None:
        if mode == "same":
            raise UnsupportedError(f"Conv node {node.name!r}: auto_pad SAME with stride and dilation is not supported")
        strides = (1,) * spatial
    name = ctx.layer_name(node, node.input[1])
    y = x.value
    if pairs is not None:
        y = _pad_layer(keras, spatial, pairs, f"{name}_pad")(y)
    kernel_hwio = np.transpose(w, (*range(2, rank), 1, 0))
    if group == 1:
        cls = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[spatial]
        layer = cls(out_ch, kernel, strides=strides, padding=mode, dilation_rate=dilations, use_bias=b is not None,
                    data_format="channels_last", name=name)
        weights = [kernel_hwio]
    elif group == c_in and spatial == 2 and out_ch % c_in == 0:
        mult = out_ch // c_in
        layer = keras.layers.DepthwiseConv2D(kernel, strides=strides, padding=mode, depth_multiplier=mult,
                                             dilation_rate=dilations, use_bias=b is not None,
                                             data_format="channels_last", name=name)
        # (kh, kw, 1, C*m) -> (kh, kw, C, m): output channel c*m + j in both frameworks.
        weights = [kernel_hwio.reshape(kernel[0], kernel[1], c_in, mult)]
    else:
        cls = {1: keras.layers.Conv1D, 2: keras.layers.Conv2D, 3: keras.layers.Conv3D}[spatial]
        layer = cls(out_ch, kernel, strides=strides, padding=mode, dilation_rate=dilations, groups=group,
                    use_bias=b is not None, data_format="channels_last", name=name)
        weights = [kernel_hwio]
    if b is not None:
        weights.append(b)
    y = call_with_weights(layer, [np.asarray(a, dtype="float32") for a in weights], y)
    if subsample is not None:
        pool_cls = {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}[spatial]
        step = subsample[0] if spatial == 1 else subsample
        y = pool_cls(pool_size=1, strides=step, padding="valid", data_format="channels_last",
                     name=f"{name}_stride")(y)
    return [KT(y, channels_last_perm(rank))]


@handles("ConvTranspose")
def conv_transpose(ctx: BuildContext, node) -> list[KT]:
    import keras
    from keras import ops

    x = ctx.get(node.input[0])
    w = ctx.const(node.input[1], node, "weights")
    b = ctx.bias(node, 2)
    if w.ndim != 4 or int(ctx.attr(node, "group", 1)) != 1:
        raise UnsupportedError(f"ConvTranspose node {node.name!r}: only 2-D, group=1 transposed convolutions are supported")
    strides = tuple(ctx.attr(node, "strides", [1, 1]))
    dilations = tuple(ctx.attr(node, "dilations", [1, 1]))
    out_pad = tuple(ctx.attr(node, "output_padding", [0, 0]))
    pads = list(ctx.attr(node, "pads", [0, 0, 0, 0]))
    if ctx.attr(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID") or ctx.attr(node, "output_shape"):
        raise UnsupportedError(f"ConvTranspose node {node.name!r}: auto_pad/output_shape are not supported")
    if any(d != 1 for d in dilations):
        raise UnsupportedError(f"ConvTranspose node {node.name!r}: dilation is not supported")
    x = ctx.to_perm(x, channels_last_perm(4))
    kernel = tuple(int(k) for k in w.shape[2:])
    name = ctx.layer_name(node, node.input[1])
    layer = keras.layers.Conv2DTranspose(int(w.shape[1]), kernel, strides=strides, padding="valid",
                                         use_bias=b is not None, data_format="channels_last", name=name)
    # torch/ONNX (in, out, kh, kw) -> Keras (kh, kw, out, in).
    weights = [np.transpose(w, (2, 3, 1, 0)).astype("float32")]
    if b is not None:
        weights.append(b.astype("float32"))
    y = call_with_weights(layer, weights, x.value)
    # 'valid' output is (in-1)*s + k; crop pads at the start and pads - output_padding at the end.
    crop_top, crop_left = pads[0], pads[1]
    crop_bottom, crop_right = pads[2] - out_pad[0], pads[3] - out_pad[1]
    if crop_bottom < 0 or crop_right < 0:
        extra = ((0, 0), (0, max(0, -crop_bottom)), (0, max(0, -crop_right)), (0, 0))
        y = ops.pad(y, extra)
        crop_bottom, crop_right = max(0, crop_bottom), max(0, crop_right)
    if any((crop_top, crop_left, crop_bottom, crop_right)):
        y = keras.layers.Cropping2D(((crop_top, crop_bottom), (crop_left, crop_right)),
                                    data_format="channels_last", name=f"{name}_crop")(y)
    return [KT(y, channels_last_perm(4))]


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


def _pool_params(ctx: BuildContext, node, spatial: int):
    kernel = tuple(int(k) for k in ctx.attr(node, "kernel_shape"))
    strides = tuple(ctx.attr(node, "strides", [1] * spatial))
    dilations = tuple(ctx.attr(node, "dilations", [1] * spatial))
    if any(d != 1 for d in dilations):
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: dilated pooling has no Keras equivalent")
    return kernel, strides, dilations


def _ceil_extra(ctx: BuildContext, node, spatial: int, kernel, strides, pairs):
    """Extra end padding that turns ceil_mode output sizes into floor-mode ones (PyTorch's rule)."""
    dims = ctx.shape(node.input[0]).at_b1[2:]
    extra = []
    for size, k, s, (b, e) in zip(dims, kernel, strides, pairs):
        out = math.ceil((size + b + e - k) / s) + 1
        if (out - 1) * s >= size + b:  # the last window must start inside the input or the left padding
            out -= 1
        extra.append(max(0, (out - 1) * s + k - (size + b + e)))
    return extra


def _mirror_is_exact(ctx: BuildContext, node, pairs, kernel, dilations, ceil_extra: bool) -> bool:
    """Whether max pooling over symmetric (mirror) padding equals max pooling over -inf padding."""
    if ceil_extra or any(int(d) != 1 for d in dilations):
        return False
    dims = ctx.shape(node.input[0]).dims[2:]
    return all(max(b, e) <= int(k) // 2 and d is not None and max(b, e) <= int(d)
               for (b, e), k, d in zip(pairs, kernel, dims))


@handles("MaxPool", "AveragePool")
def pool(ctx: BuildContext, node) -> list[KT]:
    import keras
    from keras import ops

    if len(node.output) > 1 and node.output[1]:
        raise UnsupportedError(f"MaxPool node {node.name!r}: returning indices is not supported")
    x = ctx.get(node.input[0])
    rank = x.rank
    spatial = rank - 2
    if spatial not in (1, 2, 3):
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: {spatial}-D pooling is not supported")
    kernel, strides, dilations = _pool_params(ctx, node, spatial)
    is_max = node.op_type == "MaxPool"
    ceil_mode = int(ctx.attr(node, "ceil_mode", 0))
    include_pad = int(ctx.attr(node, "count_include_pad", 0))
    mode, pairs = _spatial_padding(ctx, node, spatial, kernel, strides, dilations)
    x = ctx.to_perm(x, channels_last_perm(rank))
    y = x.value
    name = ctx.layer_name(node)
    partial = False  # ceil_mode added a last, partial window (padded on the right beyond the explicit pads)
    if ceil_mode:
        # ceil_mode only matters where it adds a last, partial window; elsewhere (every stride-1 pool) it is a no-op.
        if mode == "same":  # 'same' came from explicit symmetric pads (auto_pad SAME has no ceil_mode)
            pads = list(ctx.attr(node, "pads", [0] * (2 * spatial)))
            base = tuple(zip(pads[:spatial], pads[spatial:]))
        else:
            base = pairs if pairs is not None else tuple((0, 0) for _ in range(spatial))
        extra = _ceil_extra(ctx, node, spatial, kernel, strides, base)
        if any(extra):
            if not is_max:
                raise UnsupportedError(f"AveragePool node {node.name!r}: ceil_mode that adds a partial window is not supported")
            # Max over the partial window = max over it padded with -inf (below).
            pairs, mode = tuple((b, e + x_) for (b, e), x_ in zip(base, extra)), "valid"
            partial = True
    if pairs is not None:
        if is_max:
            width = ((0, 0), *pairs, (0, 0))
            if _mirror_is_exact(ctx, node, pairs, kernel, dilations, ceil_extra=partial):
                # A mirrored border cell is already inside every window that reaches it (pad <= kernel/2, dilation
                # 1), so the max is unchanged; unlike a -inf constant it keeps the tensor's range finite, which int8
                # calibration needs: the -inf pad gave ResNet's stem a quantization scale of 1e36 and LiteRT's
                # XNNPACK delegate refused the file ("failed to prepare").
                y = ops.pad(y, width, mode="symmetric")
            else:
                y = ops.pad(y, width, constant_values=float("-inf"))
        elif include_pad:
            y = _pad_layer(keras, spatial, pairs, f"{name}_pad")(y)
        else:
            raise UnsupportedError(
                f"AveragePool node {node.name!r}: padding {pairs} with count_include_pad=0 has no exact Keras equivalent"
            )
    elif mode == "same" and not is_max and include_pad:
        # Keras 'same' average pooling excludes padded cells; PyTorch's default counts them.
        half = tuple(((k - 1) // 2, (k - 1) - (k - 1) // 2) for k in kernel)
        y = _pad_layer(keras, spatial, half, f"{name}_pad")(y)
        mode = "valid"
    table_max = {1: keras.layers.MaxPooling1D, 2: keras.layers.MaxPooling2D, 3: keras.layers.MaxPooling3D}
    table_avg = {1: keras.layers.AveragePooling1D, 2: keras.layers.AveragePooling2D, 3: keras.layers.AveragePooling3D}
    cls = (table_max if is_max else table_avg)[spatial]
    size = kernel[0] if spatial == 1 else kernel
    step = strides[0] if spatial == 1 else strides
    y = cls(pool_size=size, strides=step, padding=mode, data_format="channels_last", name=name)(y)
    return [KT(y, channels_last_perm(rank))]


@handles("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: BuildContext, node) -> list[KT]:
    import keras

    x = ctx.get(node.input[0])
    rank = x.rank
    is_max = node.op_type == "GlobalMaxPool"
    if rank in (3, 4, 5):
        x = ctx.to_perm(x, channels_last_perm(rank))
        spatial = rank - 2
        avg = {1: keras.layers.GlobalAveragePooling1D, 2: keras.layers.GlobalAveragePooling2D,
               3: keras.layers.GlobalAveragePooling3D}
        mx = {1: keras.layers.GlobalMaxPooling1D, 2: keras.layers.GlobalMaxPooling2D,
              3: keras.layers.GlobalMaxPooling3D}
        cls = (mx if is_max else avg)[spatial]
        y = cls(keepdims=True, data_format="channels_last", name=ctx.layer_name(node))(x.value)
        return [KT(y, channels_last_perm(rank))]
    raise UnsupportedError(f"{node.op_type} node {node.name!r}: rank {rank} input is not supported")


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
