"""ONNX graph repairs after tf2onnx: part of the tf2onnx adapter (``tf_onnx``), kept apart because these are
pure ONNX rewrites driven by the Keras model's weights, with no tf2onnx import.

- Keras 3's BatchNormalization (TF backend) is ``x * (gamma * rsqrt(var + eps)) + (beta - mean * ...)``, which
  TF's grappler constant-folds during tf2onnx's freeze into a Mul + Add with two anonymous constants: gamma/beta
  are gone and the PyTorch model could not be trained like the Keras one. ``_restore_batchnorm`` finds those
  Mul/Add pairs by their values (computed from each BN layer's weights) and puts an ONNX BatchNormalization back.
  When the conv has no bias, grappler's constant folding instead pushes the Mul into the Conv weights
  ("MulConvPushDown", ``.../merged_input``): ``_restore_conv_batchnorm`` divides the scale back out of the Conv
  weights when they equal a Keras kernel times a BN scale.
- A constant scale on a conv's output (a residual branch scaled before the add, e.g. InceptionResNetV2's
  ``CustomScaleLayer``) is pushed into the conv's weights the same way: ``_restore_scaled_convs`` finds Conv
  weights that equal a Keras kernel times one scalar and puts ``Conv(x, K) * s`` back (InceptionResNetV2: 39
  convs, 17 M of its 56 M trainable weights were frozen scaled copies).
- An all-zero Dense/Conv bias (a freshly built model) disappears on the way (the BiasAdd of zeros is folded
  away), so the PyTorch model would lack that trainable bias: ``_restore_zero_biases`` puts a zero bias back
  where a MatMul/Conv weight is exactly a Keras kernel whose bias is all zeros.
- tf2onnx passes TF's ``Erfc`` (exact GELU in Keras 3) through unchanged, but ONNX has no Erfc: rewritten as
  ``1 - Erf(x)``.

Restored nodes are named after the Keras layers, so converted modules and emitted source carry the user's names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


BnWeights = tuple  # (gamma, beta, moving_mean, moving_variance, epsilon candidates, layer name)
EPSILON_CANDIDATES = (1e-3, 1e-5, 1.001e-5, 1e-6)  # Keras default, torch default, ResNet, others


@dataclass(frozen=True)
class SourceWeights:
    """What the repairs need to know about the source's weights (from Keras layers or SavedModel variables)."""

    batchnorms: tuple[BnWeights, ...]
    convs: tuple[tuple[Any, Any, str], ...]  # (kernel as ONNX OIHW, bias or None, layer name)
    zero_bias: tuple[tuple[Any, Any, str], ...]  # (kernel in the ONNX weight layout, zero bias, "MatMul"/"Conv")
    trainable: tuple[Any, ...]  # every trainable weight, as stored


@dataclass(frozen=True)
class Repairs:
    batchnorm: int
    zero_biases: int
    erfc: int
    scaled_convs: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.batchnorm or self.zero_biases or self.erfc or self.scaled_convs)


def repair(proto: Any, weights: SourceWeights | None) -> Repairs:
    """Apply every repair to ``proto`` in place."""
    erfc = _rewrite_erfc(proto)
    if weights is None:
        return Repairs(0, 0, erfc)
    # Each BatchNorm layer is put back once: layers with the same statistics (a freshly built model's are all
    # gamma 1, beta 0, mean 0, var 1) would otherwise match in both places, and a conv whose own BN another had
    # taken was left folded (ResNet50V2: 2 convs, 2.9 M weights frozen).
    taken: set[str] = set()
    restored = _restore_batchnorm(proto, list(weights.batchnorms), taken) + \
        _restore_conv_batchnorm(proto, list(weights.batchnorms), list(weights.convs), taken)
    scaled = _restore_scaled_convs(proto, list(weights.convs))  # before the zero biases: its kernels are exact then
    return Repairs(restored, _restore_zero_biases(proto, list(weights.zero_bias)), erfc, scaled)


def _f32(value: Any) -> Any:
    import numpy as np

    return np.asarray(value.numpy() if hasattr(value, "numpy") else value, np.float32)


def weights_from_keras(model: Any) -> SourceWeights:
    import keras
    import numpy as np

    bns, convs, zero = [], [], []
    for layer in all_layers(model):
        if not getattr(layer, "built", False):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = _f32(layer.moving_mean), _f32(layer.moving_variance)
            gamma = _f32(layer.gamma) if layer.gamma is not None else np.ones_like(mean)
            beta = _f32(layer.beta) if layer.beta is not None else np.zeros_like(mean)
            bns.append((gamma, beta, mean, var, (float(layer.epsilon),), layer.name))
            continue
        kernel, bias = getattr(layer, "kernel", None), getattr(layer, "bias", None)
        if kernel is None:
            continue
        k = _f32(kernel)
        b = _f32(bias) if bias is not None else None
        if isinstance(layer, keras.layers.Conv2D) and k.ndim == 4:
            convs.append((k.transpose(3, 2, 0, 1), b, layer.name))
            if b is not None and not np.any(b):
                zero.append((k.transpose(3, 2, 0, 1), b, "Conv"))
        elif isinstance(layer, keras.layers.Dense) and k.ndim == 2 and b is not None and not np.any(b):
            zero.append((k, b, "MatMul"))
    trainable = tuple(_f32(w) for w in model.trainable_weights)
    return SourceWeights(tuple(bns), tuple(convs), tuple(zero), trainable)


def weights_from_variables(variables: Any) -> SourceWeights:
    """The same from a SavedModel's variables, grouped by layer path (``conv2d/kernel:0``); BatchNorm epsilon is
    not stored, so the usual values are tried."""
    import numpy as np

    groups: dict[str, dict[str, Any]] = {}
    for v in variables:
        path, _, leaf = v.name.split(":")[0].rpartition("/")
        groups.setdefault(path, {})[leaf] = v
    bns, convs, zero = [], [], []
    for path, g in groups.items():
        name = path.rsplit("/", 1)[-1] or path
        if "moving_mean" in g and "moving_variance" in g:
            mean, var = _f32(g["moving_mean"]), _f32(g["moving_variance"])
            gamma = _f32(g["gamma"]) if "gamma" in g else np.ones_like(mean)
            beta = _f32(g["beta"]) if "beta" in g else np.zeros_like(mean)
            bns.append((gamma, beta, mean, var, EPSILON_CANDIDATES, name))
        elif "kernel" in g:
            k = _f32(g["kernel"])
            b = _f32(g["bias"]) if "bias" in g else None
            if k.ndim == 4:
                convs.append((k.transpose(3, 2, 0, 1), b, name))
                if b is not None and not np.any(b):
                    zero.append((k.transpose(3, 2, 0, 1), b, "Conv"))
            elif k.ndim == 2 and b is not None and not np.any(b):
                zero.append((k, b, "MatMul"))
    trainable = tuple(_f32(v) for v in variables if getattr(v, "trainable", False))
    return SourceWeights(tuple(bns), tuple(convs), tuple(zero), trainable)


def all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(all_layers(layer))
    return out



def _rewrite_erfc(proto: Any) -> int:
    """``Erfc(x)`` -> ``1 - Erf(x)`` (ONNX has no Erfc op)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    count = 0
    for node in list(graph.node):
        if node.op_type != "Erfc":
            continue
        one = f"crossport_erfc_one_{count}"
        graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
        erf_out = f"{node.output[0]}__erf"
        index = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(index, onnx.helper.make_node("Sub", [one, erf_out], [node.output[0]],
                                                       name=f"{node.name}_sub"))
        graph.node.insert(index, onnx.helper.make_node("Erf", [node.input[0]], [erf_out], name=f"{node.name}_erf"))
        count += 1
    return count


def _named_first(order: Any, layer_of: Any, tf_name: str) -> list[int]:
    """``order`` with the candidates whose Keras layer name is a component of ``tf_name`` first (TF names a folded
    op after its layer: ``model/conv2_block1_1_bn_1/batchnorm/mul_1``). Values alone cannot tell apart layers with
    equal weights, such as a fresh model's BatchNorms."""
    import re

    parts = tf_name.split("/")

    def named(k: int) -> bool:
        pattern = re.compile(re.escape(str(layer_of(k))) + r"(_\d+)?")
        return any(pattern.fullmatch(p) for p in parts)

    order = list(order)
    return [k for k in order if named(k)] + [k for k in order if not named(k)]


def _equal(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are the same array: compared at 16 spread-out elements first, then whole."""
    import numpy as np

    if a.shape != b.shape:
        return False
    idx = np.linspace(0, a.size - 1, num=min(16, a.size)).astype(np.int64)
    return bool(np.array_equal(a.flat[idx], b.flat[idx]) and np.array_equal(a, b))


def _from(start: int, n: int) -> list[int]:
    """``range(n)`` starting at ``start`` (mod ``n``) and wrapping around."""
    return [(start + i) % n for i in range(n)] if n else []


def _restore_conv_batchnorm(proto: Any, layers: list[BnWeights], kernels: list[Any], used: set[str]) -> int:
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
        if any(_equal(kernels[j][0], w)
               for j in _named_first(range(len(kernels)), lambda j: kernels[j][2], node.input[1])):
            continue  # a kernel as it is: nothing folded (a fresh BatchNorm's scale, 1 - 5e-6, is within tolerance)
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits \
            else None
        hit = None
        for k in _named_first(_from(next_layer, len(layers)), lambda k: layers[k][5], node.name):
            gamma, beta, mean, var, eps_candidates, bn_name = layers[k]
            if bn_name in used or gamma.size != w.shape[0]:
                continue
            order = _named_first(_from(next_kernel, len(kernels)), lambda j: kernels[j][2], node.input[1])
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
        base = _node_name(graph, bn_name)
        conv_base = _node_name(graph, conv_name)
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


def _restore_scaled_convs(proto: Any, kernels: list[Any]) -> int:
    """Undo a constant output scale pushed into a conv: ``Conv(x, s * K, s * b)`` -> ``Conv(x, K, b) * s``, where K
    (and b) are a Keras layer's and s is one scalar."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    by_shape: dict[tuple[int, ...], list[Any]] = {}
    for kernel, kbias, name in kernels:
        by_shape.setdefault(tuple(kernel.shape), []).append((kernel, kbias, name))
    restored = 0
    used: set[str] = set()
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        candidates = [c for c in by_shape.get(tuple(inits[node.input[1]].dims), ()) if c[2] not in used]
        if not candidates or (len(node.input) > 2 and node.input[2] not in inits):
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
        hit = next((h for h in (_scale_of(w, bias, *c) for c in candidates) if h is not None), None)
        if hit is None:
            continue
        kernel, kbias, name, scale = hit
        used.add(name)
        base = _node_name(graph, name)
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


def _scale_of(w: Any, bias: Any, kernel: Any, kbias: Any, name: str) -> tuple[Any, Any, str, Any] | None:
    """``(kernel, kbias, name, s)`` when ``w`` is ``s * kernel`` for one scalar s other than 1 and ``bias`` is
    ``s * kbias`` (or absent where ``kbias`` is absent or all zero, an exporter drops those); else None. Compared
    at 64 spread-out elements first, then whole, with the tolerance of the BatchNorm restore."""
    import numpy as np

    at = int(np.argmax(np.abs(kernel)))
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


def _restore_batchnorm(proto: Any, layers: list[BnWeights], used: set[str]) -> int:
    """Replace ``Mul(x, scale) -> Add(shift)`` pairs that equal a BN layer's folded form by BatchNormalization.

    Only where the channel axis is axis 1 of ``x`` (NCHW after tf2onnx's transposes, or (N, C)), which is what
    ONNX BatchNormalization normalises over.
    """
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if not layers:
        return 0
    graph = proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    ranks: dict[str, int] = {}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
            if vi.type.tensor_type.HasField("shape"):
                ranks[vi.name] = len(vi.type.tensor_type.shape.dim)
    except Exception:  # noqa: BLE001 - shape inference is a hint only
        pass
    folded = []
    for gamma, beta, mean, var, eps_candidates, name in layers:
        for eps in eps_candidates:
            scale = gamma / np.sqrt(var + np.float32(eps))
            folded.append((scale.astype(np.float32), (beta - mean * scale).astype(np.float32), gamma, beta, mean,
                           var, eps, name))
    restored = 0
    for node in list(graph.node):
        if node.op_type != "Mul" or len(node.input) != 2:
            continue
        const_in = [n for n in node.input if n in inits]
        if len(const_in) != 1:
            continue
        x = node.input[0] if node.input[1] == const_in[0] else node.input[1]
        s = inits[const_in[0]]
        nxt = consumers.get(node.output[0], [])
        add = nxt[0] if len(nxt) == 1 and nxt[0].op_type == "Add" else None
        t_name = next((n for n in add.input if n != node.output[0]), None) if add is not None else None
        if t_name in inits:
            t = inits[t_name]
        else:  # a zero shift (beta == mean * scale) leaves no Add at all
            add, t = None, np.zeros(s.size, np.float32)
        channels = s.size
        if not _channel_axis_one(s.shape, ranks.get(x)) or t.size != channels:
            continue
        order = _named_first(range(len(folded)), lambda k: folded[k][7], node.name)
        match = next((k for k in order if folded[k][7] not in used and folded[k][0].size == channels
                      and np.allclose(folded[k][0], s.reshape(-1), rtol=1e-5, atol=1e-7)
                      and np.allclose(folded[k][1], t.reshape(-1), rtol=1e-5, atol=1e-6)), None)
        if match is None:
            continue
        _, _, gamma, beta, mean, var, eps, layer_name = folded[match]
        used.add(layer_name)
        base = _node_name(graph, layer_name)
        names = [f"{base}_{p}" for p in ("gamma", "beta", "mean", "var")]
        for name, value in zip(names, (gamma, beta, mean, var)):
            graph.initializer.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        final = add.output[0] if add is not None else node.output[0]
        bn = onnx.helper.make_node("BatchNormalization", [x, *names], [final], name=base, epsilon=eps)
        index = list(graph.node).index(node)
        graph.node.remove(node)
        if add is not None:
            graph.node.remove(add)
        graph.node.insert(index, bn)
        restored += 1
    return restored


def _channel_axis_one(shape: tuple[int, ...], rank: int | None) -> bool:
    """Is a broadcast constant of ``shape`` per-channel on axis 1 of a tensor of ``rank``?"""
    dims = list(shape)
    if len(dims) >= 2:
        return all(d == 1 for i, d in enumerate(dims) if i != 1) and (rank is None or rank == len(dims))
    return len(dims) <= 1 and rank == 2


def _restore_zero_biases(proto: Any, wanted: list[tuple[Any, Any, str]]) -> int:
    """Give MatMul/Conv nodes whose weight is a source kernel with an all-zero bias that zero bias back."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if not wanted:
        return 0
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    restored = 0
    for node in list(graph.node):
        if node.op_type not in ("MatMul", "Conv") or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if node.op_type == "Conv" and len(node.input) > 2:
            continue
        if node.op_type == "MatMul" and any(c.op_type == "Add" and any(i in inits for i in c.input)
                                            for c in consumers.get(node.output[0], [])):
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        hit = next((k for k, (kernel, _, op) in enumerate(wanted)
                    if op == node.op_type and kernel.shape == w.shape and np.array_equal(kernel, w)), None)
        if hit is None:
            continue
        _, bias, _ = wanted.pop(hit)
        name = f"crossport_zero_bias_{restored}"
        graph.initializer.append(numpy_helper.from_array(bias, name))
        if node.op_type == "Conv":
            node.input.append(name)
        else:
            out = node.output[0]
            node.output[0] = f"{out}__nobias"
            index = list(graph.node).index(node)
            graph.node.insert(index + 1, onnx.helper.make_node("Add", [node.output[0], name], [out],
                                                               name=f"{name}_add"))
        restored += 1
    return restored


def _node_name(graph: Any, wanted: str) -> str:
    """``wanted`` (a Keras layer name, so converted modules carry the user's names) made unique in ``graph``."""
    taken = {n.name for n in graph.node} | {i.name for i in graph.initializer}
    name, k = wanted, 1
    while name in taken or f"{name}_gamma" in taken:
        k += 1
        name = f"{wanted}_{k}"
    return name
