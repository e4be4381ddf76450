"""tf2onnx repairs on Conv nodes whose weights TF's grappler merged with something else: part of
``tf_onnx_repair`` (see its docstring), kept apart for size.

- ``restore_conv_batchnorm``: a BatchNorm folded into the conv before it (MulConvPushDown, ``.../merged_input``).
- ``restore_scaled_convs``: a constant scale on the conv's output folded into its kernel.

Both match the ONNX weights to a Keras layer's own weights, in the order the layers come and by TF's op names
first (``named_first``), so a fresh model's equal BatchNorms go back after their own convs.
"""
from __future__ import annotations

from typing import Any


def named_first(order: Any, layer_of: Any, tf_name: str) -> list[int]:
    """``order`` with the candidates whose Keras layer name is a component of ``tf_name`` first (TF names a folded
    op after its layer: ``model/conv2_block1_1_bn_1/batchnorm/mul_1``). Values alone cannot tell apart layers with
    equal weights, such as a fresh model's BatchNorms."""
    parts = tf_name.split("/")

    def named(k: int) -> bool:  # the layer's name, or it with Keras' ``_<n>`` call suffix
        name = str(layer_of(k))
        return any(p == name or (p.startswith(name + "_") and p[len(name) + 1:].isdigit()) for p in parts)

    order = list(order)
    first = [k for k in order if named(k)]
    taken = set(first)
    return first + [k for k in order if k not in taken]


def same_array(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same array: compared at 16 spread-out elements first, then whole."""
    import numpy as np

    if a.shape != b.shape:
        return False
    idx = np.linspace(0, a.size - 1, num=min(16, a.size)).astype(np.int64)
    return bool(np.array_equal(a.flat[idx], b.flat[idx]) and np.array_equal(a, b))


def _from(start: int, n: int) -> list[int]:
    """``range(n)`` starting at ``start`` (mod ``n``) and wrapping around."""
    return [(start + i) % n for i in range(n)] if n else []


def restore_conv_batchnorm(proto: Any, layers: list[tuple[Any, ...]], kernels: list[Any], used: set[str]) -> int:
    """Undo grappler's MulConvPushDown: ``Conv(x, K * scale, shift)`` -> ``BatchNormalization(Conv(x, K))``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if not layers or not kernels:
        return 0
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    restored = 0
    # Convolutions, their BatchNorms and their kernels come in the same order: each search starts after the last
    # match, so a model's conv usually matches at the first candidate (ResNet50: 0.47 s of whole-kernel
    # comparisons when every search started from the first BatchNorm and kernel).
    next_layer = next_kernel = 0
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if any(same_array(kernels[j][0], w)
               for j in named_first(range(len(kernels)), lambda j: kernels[j][2], node.input[1])):
            continue  # a kernel as it is: nothing folded (a fresh BatchNorm's scale, 1 - 5e-6, is within tolerance)
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits \
            else None
        hit = None
        for k in named_first(_from(next_layer, len(layers)), lambda k: layers[k][5], node.name):
            gamma, beta, mean, var, eps_candidates, bn_name = layers[k]
            if bn_name in used or gamma.size != w.shape[0]:
                continue
            order = named_first(_from(next_kernel, len(kernels)), lambda j: kernels[j][2], node.input[1])
            for eps, j in ((e, j) for e in eps_candidates for j in order):
                kernel, kbias, conv_name = kernels[j]
                if kernel.shape != w.shape:
                    continue
                scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
                shift = (beta - mean * scale).astype(np.float32)
                if not np.allclose(kernel * scale[:, None, None, None], w, rtol=1e-5, atol=1e-7):
                    continue
                expected_bias = shift if kbias is None else kbias * scale + shift
                if bias is None:  # an all-zero bias Add is dropped by the exporter
                    bias = np.zeros_like(expected_bias)
                if np.allclose(bias, expected_bias, rtol=1e-5, atol=1e-6):
                    hit = (k, kernel, kbias, conv_name, eps)
                    next_layer, next_kernel = k + 1, j + 1
                    break
            if hit:
                break
        if hit is None:
            continue
        k, kernel, kbias, conv_name, eps = hit
        gamma, beta, mean, var, _, bn_name = layers[k]
        used.add(bn_name)
        base = node_name(graph, bn_name)
        conv_base = node_name(graph, conv_name)
        node.name = conv_base
        graph.initializer.append(numpy_helper.from_array(kernel, f"{conv_base}_kernel"))
        conv_inputs = [node.input[0], f"{conv_base}_kernel"]
        if kbias is not None:
            graph.initializer.append(numpy_helper.from_array(kbias, f"{conv_base}_bias"))
            conv_inputs.append(f"{conv_base}_bias")
        names = [f"{base}_{p}" for p in ("gamma", "beta", "mean", "var")]
        for name, value in zip(names, (gamma, beta, mean, var)):
            graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        out = node.output[0]
        mid = f"{out}__conv"
        del node.input[:]
        node.input.extend(conv_inputs)
        node.output[0] = mid
        index = list(graph.node).index(node)
        graph.node.insert(index + 1, onnx.helper.make_node("BatchNormalization", [mid, *names], [out], name=base,
                                                           epsilon=eps))
        restored += 1
    return restored


def restore_scaled_convs(proto: Any, kernels: list[Any]) -> int:
    """Undo a constant output scale pushed into a conv: ``Conv(x, s * K, s * b)`` -> ``Conv(x, K, b) * s``, where K
    (and b) are a Keras layer's and s is one scalar."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    by_shape: dict[tuple[int, ...], list[Any]] = {}
    for kernel, kbias, name in kernels:  # with the index of each kernel's largest magnitude, found once
        by_shape.setdefault(tuple(kernel.shape), []).append((kernel, kbias, name, int(np.argmax(np.abs(kernel)))))
    restored = 0
    used: set[str] = set()
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        same = by_shape.get(tuple(inits[node.input[1]].dims), [])
        candidates = [same[j] for j in named_first(range(len(same)), lambda j: same[j][2], node.input[1])
                      if same[j][2] not in used]
        if not candidates or (len(node.input) > 2 and node.input[2] not in inits):
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        if any(same_array(c[0], w) for c in candidates):
            continue  # a kernel as it is (most convs, and every one the BatchNorm restore put back)
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
        hit = next((h for h in (_scale_of(w, bias, *c) for c in candidates) if h is not None), None)
        if hit is None:
            continue
        kernel, kbias, name, scale = hit
        used.add(name)
        base = node_name(graph, name)
        node.name = base
        graph.initializer.append(numpy_helper.from_array(kernel, f"{base}_kernel"))
        node.input[1] = f"{base}_kernel"
        if bias is not None:
            del node.input[2:]
            if kbias is not None:
                graph.initializer.append(numpy_helper.from_array(kbias, f"{base}_bias"))
                node.input.append(f"{base}_bias")
        graph.initializer.append(numpy_helper.from_array(np.asarray(scale, np.float32), f"{base}_output_scale"))
        out = node.output[0]
        node.output[0] = f"{out}__unscaled"
        index = list(graph.node).index(node)
        graph.node.insert(index + 1, onnx.helper.make_node("Mul", [node.output[0], f"{base}_output_scale"], [out],
                                                           name=f"{base}_scale"))
        restored += 1
    return restored


def _scale_of(w: Any, bias: Any, kernel: Any, kbias: Any, name: str, at: int) -> tuple[Any, Any, str, Any] | None:
    """``(kernel, kbias, name, s)`` when ``w`` is ``s * kernel`` for one scalar s other than 1 and ``bias`` is
    ``s * kbias`` (or absent where ``kbias`` is absent or all zero, an exporter drops those); else None. ``at``: the
    index of the kernel's largest magnitude, where s is read. Compared at 64 spread-out elements first, then whole,
    with the tolerance of the BatchNorm restore."""
    import numpy as np

    if kernel.flat[at] == 0:
        return None
    scale = np.float32(w.flat[at] / kernel.flat[at])
    if not np.isfinite(scale) or scale == 0 or abs(float(scale) - 1.0) < 1e-6:
        return None
    idx = np.linspace(0, w.size - 1, num=min(64, w.size)).astype(np.int64)
    if not np.allclose(kernel.flat[idx] * scale, w.flat[idx], rtol=1e-5, atol=1e-7) or \
            not np.allclose(kernel * scale, w, rtol=1e-5, atol=1e-7):
        return None
    if bias is None:
        return (kernel, kbias, name, scale) if kbias is None or not np.any(kbias) else None
    expected = np.zeros_like(bias) if kbias is None else kbias * scale
    return (kernel, kbias, name, scale) if np.allclose(bias, expected, rtol=1e-5, atol=1e-6) else None


def node_name(graph: Any, wanted: str) -> str:
    """``wanted`` (a Keras layer name, so converted modules carry the user's names) made unique in ``graph``."""
    taken = {n.name for n in graph.node} | {i.name for i in graph.initializer}
    name, k = wanted, 1
    while name in taken or f"{name}_gamma" in taken:
        k += 1
        name = f"{wanted}_{k}"
    return name
