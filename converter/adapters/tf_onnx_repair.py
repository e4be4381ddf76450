"""ONNX graph repairs after tf2onnx: part of the tf2onnx adapter (``tf_onnx``), kept apart because these are
pure ONNX rewrites driven by the Keras model's weights, with no tf2onnx import.

- Keras 3's BatchNormalization (TF backend) is ``x * (gamma * rsqrt(var + eps)) + (beta - mean * ...)``, which
  TF's grappler constant-folds during tf2onnx's freeze into a Mul + Add with two anonymous constants: gamma/beta
  are gone and the PyTorch model could not be trained like the Keras one. ``_restore_batchnorm`` finds those
  Mul/Add pairs by their values (computed from each BN layer's weights) and puts an ONNX BatchNormalization back.
  When the conv has no bias, grappler's constant folding instead pushes the Mul into the Conv weights
  ("MulConvPushDown", ``.../merged_input``): ``restore_conv_batchnorm`` divides the scale back out of the Conv
  weights when they equal a Keras kernel times a BN scale.
- A constant scale on a conv's output (a residual branch scaled before the add, e.g. InceptionResNetV2's
  ``CustomScaleLayer``) is pushed into the conv's weights the same way: ``restore_scaled_convs`` finds Conv
  weights that equal a Keras kernel times one scalar and puts ``Conv(x, K) * s`` back (InceptionResNetV2: 39
  convs, 17 M of its 56 M trainable weights were frozen scaled copies).
- An all-zero Dense/Conv bias (a freshly built model) disappears on the way (the BiasAdd of zeros is folded
  away), so the PyTorch model would lack that trainable bias: ``_restore_zero_biases`` puts a zero bias back
  where a MatMul/Conv weight is exactly a Keras kernel whose bias is all zeros.
- tf2onnx lowers an integer ``SelectV2`` to Cast/Mul/Add arithmetic, which Keras' Embedding hits on every call:
  ``tf_onnx_select`` writes ``Where`` back and drops the negative-index wrap a ``Gather`` does itself.
- tf2onnx passes TF's ``Erfc`` (exact GELU in Keras 3) through unchanged, but ONNX has no Erfc: rewritten as
  ``1 - Erf(x)``.

Restored nodes are named after the Keras layers, so converted modules and emitted source carry the user's names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from converter.adapters.tf_onnx_repair_conv import named_first, node_name, restore_conv_batchnorm, \
    restore_scaled_convs, same_array
from converter.adapters.tf_onnx_select import drop_index_wraps, restore_selects


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
    selects: int = 0  # integer selects put back as Where, plus negative-index wraps a Gather does itself

    @property
    def changed(self) -> bool:
        return bool(self.batchnorm or self.zero_biases or self.erfc or self.scaled_convs or self.selects)


def repair(proto: Any, weights: SourceWeights | None) -> Repairs:
    """Apply every repair to ``proto`` in place."""
    erfc = _rewrite_erfc(proto)
    selects = restore_selects(proto)
    selects += drop_index_wraps(proto)
    if weights is None:
        return Repairs(0, 0, erfc, selects=selects)
    # Each BatchNorm layer is put back once: layers with the same statistics (a freshly built model's are all
    # gamma 1, beta 0, mean 0, var 1) would otherwise match in both places, and a conv whose own BN another had
    # taken was left folded (ResNet50V2: 2 convs, 2.9 M weights frozen).
    taken: set[str] = set()
    restored = _restore_batchnorm(proto, list(weights.batchnorms), taken) + \
        restore_conv_batchnorm(proto, list(weights.batchnorms), list(weights.convs), taken)
    scaled = restore_scaled_convs(proto, list(weights.convs))  # before the zero biases: its kernels are exact then
    return Repairs(restored, _restore_zero_biases(proto, list(weights.zero_bias)), erfc, scaled, selects)


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
        bias = getattr(layer, "bias", None)
        b = _f32(bias) if bias is not None else None
        if isinstance(layer, keras.layers.SeparableConv2D):
            _add_conv(_f32(layer.pointwise_kernel), b, layer.name, convs, zero)
            continue
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        k = _f32(kernel)
        if isinstance(layer, keras.layers.Conv2D) and k.ndim == 4:
            _add_conv(k, b, layer.name, convs, zero)
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
        elif "pointwise_kernel" in g:  # a SeparableConv2D: its 1x1 half, where a BatchNorm is folded
            _add_conv(_f32(g["pointwise_kernel"]), _f32(g["bias"]) if "bias" in g else None, name, convs, zero)
        elif "kernel" in g:
            k = _f32(g["kernel"])
            b = _f32(g["bias"]) if "bias" in g else None
            if k.ndim == 4:
                _add_conv(k, b, name, convs, zero)
            elif k.ndim == 2 and b is not None and not np.any(b):
                zero.append((k, b, "MatMul"))
    trainable = tuple(_f32(v) for v in variables if getattr(v, "trainable", False))
    return SourceWeights(tuple(bns), tuple(convs), tuple(zero), trainable)


def _add_conv(kernel: Any, bias: Any, name: str, convs: list[Any], zero: list[Any]) -> None:
    """A Keras HWIO kernel as the ONNX Conv weight (OIHW) the repairs compare with. A SeparableConv2D's pointwise
    kernel counts too: TF runs that layer as a depthwise conv and a 1x1 conv, and folds a following BatchNorm into
    the 1x1 (NASNetMobile: 160 of its 192 BatchNorms, 2.05 M of 5.29 M trainable weights left frozen)."""
    import numpy as np

    oihw = kernel.transpose(3, 2, 0, 1)
    convs.append((oihw, bias, name))
    if bias is not None and not np.any(bias):
        zero.append((oihw, bias, "Conv"))


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
        order = named_first(range(len(folded)), lambda k: folded[k][7], node.name)
        match = next((k for k in order if folded[k][7] not in used and folded[k][0].size == channels
                      and np.allclose(folded[k][0], s.reshape(-1), rtol=1e-5, atol=1e-7)
                      and np.allclose(folded[k][1], t.reshape(-1), rtol=1e-5, atol=1e-6)), None)
        if match is None:
            continue
        _, _, gamma, beta, mean, var, eps, layer_name = folded[match]
        used.add(layer_name)
        base = node_name(graph, layer_name)
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
        hit = next((k for k, (kernel, _, op) in enumerate(wanted) if op == node.op_type and same_array(kernel, w)),
                   None)
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
