"""Convolution and pooling: the ops that become weighted / spatial Keras layers (normalization: ``ops_norm``)."""
from __future__ import annotations

import math

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder.context import KT, BuildContext, call_with_weights
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
