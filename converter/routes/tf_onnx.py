"""Keras (.keras / .h5) and SavedModel -> ONNX with tf2onnx (the library Keras' own ``export(format="onnx")``
calls on the TensorFlow backend). Every tf2onnx / Keras-export workaround lives here.

- ``Model.export(format="onnx")`` refuses a loaded model that was never called ("The model provided has never
  called") and ``tf2onnx.convert.from_keras`` breaks on Keras 3 (tf2onnx#2329, #2348): we trace our own
  ``tf.function`` with an explicit ``input_signature`` (the documented workaround) and call
  ``tf2onnx.convert.from_function``.
- tf2onnx's back-to-back optimizer folds BatchNormalization into the preceding Conv. That is fine for inference
  but deletes BN's trainable gamma/beta, so the PyTorch model could not be fine-tuned like the Keras one: the fusion
  is switched off for our export only.
- Keras 3's BatchNormalization (TF backend) is ``x * (gamma * rsqrt(var + eps)) + (beta - mean * ...)``, which
  TF's grappler constant-folds during tf2onnx's freeze into a Mul + Add with two anonymous constants: gamma/beta
  are gone and the PyTorch model could not be trained like the Keras one. ``_restore_batchnorm`` finds those
  Mul/Add pairs by their values (computed from each BN layer's weights) and puts an ONNX BatchNormalization back.
  When the conv has no bias, grappler's constant folding instead pushes the Mul into the Conv weights
  ("MulConvPushDown", ``.../merged_input``): ``_restore_batchnorm`` also divides the scale back out of the Conv
  weights when they equal a Keras kernel times a BN scale.
- An all-zero Dense/Conv bias (a freshly built model) disappears on the way (the BiasAdd of zeros is folded
  away), so the PyTorch model would lack that trainable bias: ``_restore_zero_biases`` puts a zero bias back
  where a MatMul/Conv weight is exactly a Keras kernel whose bias is all zeros.
- tf2onnx passes TF's ``Erfc`` (exact GELU in Keras 3) through unchanged, but ONNX has no Erfc: rewritten as
  ``1 - Erf(x)``.
- tf2onnx recognises Keras 3's LSTM loop as an ONNX LSTM but leaves GRU (reset_after) as a ``Loop``, which
  onnx2torch cannot convert: when a Loop remains and the recurrent layers have a fixed sequence length, we
  re-export a clone with ``unroll=True`` (same weights, same maths, no Loop).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from converter.errors import ModelFileError, ShapeError, UnsafeLoadError, UnsupportedError

DEFAULT_OPSET = 17
TRUST_FLAG = "--trust-code"


@dataclass(frozen=True)
class TfExport:
    """What the ONNX export produced and how."""

    path: Path
    exporter: str
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_batch: bool
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TfSignature:
    """One model input as Keras/TF sees it (channels-last as stored)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


def load_keras(path: str, trust_code: bool) -> Any:
    """Load ``.keras`` / ``.h5`` with ``safe_mode`` unless the user trusts the file (a Lambda layer is code)."""
    from converter.frameworks import keras

    k = keras()
    try:
        return k.models.load_model(path, compile=False, safe_mode=not trust_code)
    except ValueError as err:
        text = str(err)
        if "safe_mode" in text or "Lambda" in text and "unsafe" in text.lower():
            raise UnsafeLoadError(f"{path}: contains Python code (e.g. a Lambda layer); loading it would run that "
                                  f"code. Pass {TRUST_FLAG} if you trust this file") from err
        raise ModelFileError(f"{path}: not a loadable Keras model ({_line(text)})") from err
    except (OSError, TypeError, KeyError) as err:
        raise ModelFileError(f"{path}: not a loadable Keras model ({_line(str(err))})") from err


def keras_signature(model: Any, given: dict[str, tuple[int, ...]] | list[tuple[int, ...]]) -> list[TfSignature]:
    """The model's inputs; ``given`` (from --input-shape) fills unknown dims. Subclassed models record their
    build shape only."""
    inputs = getattr(model, "inputs", None) or []
    if inputs:
        sigs = [TfSignature(t.name, tuple(t.shape), str(t.dtype).replace("tf.", "")) for t in inputs]
    else:
        cfg = model.get_build_config() if hasattr(model, "get_build_config") else None
        shape = (cfg or {}).get("input_shape")
        if shape is None and not given:
            raise ShapeError("the Keras model does not record its input shape; pass --input-shape")
        # a build shape records the batch of the first call; the batch of a Keras model is free
        dims = (None, *shape[1:]) if shape else ()
        sigs = [TfSignature("input", tuple(dims), "float32")]
    if isinstance(given, dict) and given:
        sigs = [TfSignature(s.name, given.get(s.name, s.shape), s.dtype) for s in sigs]
    elif isinstance(given, list) and given:
        if len(given) != len(sigs):
            raise ShapeError(f"--input-shape given {len(given)} times; the model has {len(sigs)} inputs")
        sigs = [TfSignature(s.name, tuple(g), s.dtype) for s, g in zip(sigs, given)]
    return sigs


@contextlib.contextmanager
def _keep_batchnorm() -> Iterator[None]:
    """Switch off tf2onnx's Conv+BatchNormalization fusion for the duration of one export (see module doc)."""
    from tf2onnx.optimizer import back_to_back_optimizer as b2b

    key = ("Conv", "BatchNormalization")
    saved = b2b._func_map.get(key)
    if saved is not None:
        b2b._func_map[key] = lambda g, node, consumers: []
    try:
        yield
    finally:
        if saved is not None:
            b2b._func_map[key] = saved


def _export_fn(fn: Any, sig: list[Any], path: Path, opset: int) -> Any:
    import tf2onnx

    from converter.frameworks import silenced_stderr

    with _keep_batchnorm(), silenced_stderr(), _quiet_tf2onnx():
        try:
            model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset,
                                                           output_path=str(path))
        except Exception as err:  # noqa: BLE001 - tf2onnx raises whatever TF raised
            raise UnsupportedError(f"tf2onnx could not convert the model: {_line(str(err))}") from err
    return model_proto


@contextlib.contextmanager
def _quiet_tf2onnx() -> Iterator[None]:
    import logging

    log = logging.getLogger("tf2onnx")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def keras_to_onnx(model: Any, signature: list[TfSignature], path: Path, opset: int = DEFAULT_OPSET) -> TfExport:
    """Trace ``model(inputs, training=False)`` and convert it with tf2onnx."""
    import tensorflow as tf

    notes: list[str] = []
    proto = _export_keras(model, signature, path, opset)
    if any(n.op_type in ("Loop", "Scan", "If") for n in proto.graph.node):
        unrolled = _unrolled_clone(model)
        if unrolled is not None and all(s.shape[1:] and None not in s.shape[1:] for s in signature):
            proto = _export_keras(unrolled, signature, path, opset)
            notes.append("tf2onnx left a recurrent layer as an ONNX Loop (no ONNX GRU for reset_after); exported "
                         "the recurrent layers unrolled over the fixed sequence length instead")
    del tf
    bns = _batchnorm_weights(model)
    restored = _restore_batchnorm(proto, bns) + _restore_conv_batchnorm(proto, bns, _conv_kernels(model))
    erfc = _rewrite_erfc(proto)
    zero_biases = _restore_zero_biases(proto, model)
    if zero_biases:
        notes.append(f"put back {zero_biases} all-zero bias(es) the export had dropped (they stay trainable)")
    if restored or erfc or zero_biases:
        import onnx

        onnx.save(proto, str(path))
    if restored:
        notes.append(f"restored {restored} BatchNormalization node(s) that TF had folded into constants")
    loops = sorted({n.op_type for n in proto.graph.node if n.op_type in ("Loop", "Scan", "If")})
    if loops:
        raise UnsupportedError(f"the ONNX export contains control flow ({', '.join(loops)}) that onnx2torch cannot "
                               "convert; give recurrent layers a fixed sequence length (--input-shape)")
    return TfExport(path, "tf2onnx (tf.function trace)", opset, tuple(i.name for i in proto.graph.input),
                    tuple(o.name for o in proto.graph.output), any(s.shape and s.shape[0] is None
                                                                     for s in signature), tuple(notes))


def _export_keras(model: Any, signature: list[TfSignature], path: Path, opset: int) -> Any:
    import tensorflow as tf

    sig = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=_tf_name(s.name, i)) for i, s in enumerate(signature)]

    @tf.function(input_signature=sig)
    def serve(*args: Any) -> Any:
        out = model(list(args) if len(args) > 1 else args[0], training=False)
        return list(out) if isinstance(out, (tuple, list)) else out

    return _export_fn(serve, sig, path, opset)


def _tf_name(name: str, index: int) -> str:
    import re

    clean = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name.split(":")[0])
    return clean if clean and clean[0].isalpha() else f"input_{index}"


def _unrolled_clone(model: Any) -> Any:
    """A clone of ``model`` whose recurrent layers have ``unroll=True`` (same weights), or None."""
    import keras

    rnn_types = (keras.layers.RNN,)
    found = [l for l in _all_layers(model) if isinstance(l, rnn_types)]
    if not found:
        return None

    def clone_fn(layer: Any) -> Any:
        if isinstance(layer, rnn_types):
            cfg = layer.get_config()
            cfg["unroll"] = True
            return layer.__class__.from_config(cfg)
        return layer.__class__.from_config(layer.get_config())

    try:
        clone = keras.models.clone_model(model, clone_function=clone_fn)
        clone.set_weights(model.get_weights())
    except Exception:  # noqa: BLE001 - subclassed models cannot be cloned this way
        return None
    return clone


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def saved_model_to_onnx(path: str, given: list[tuple[int, ...]], onnx_path: Path,
                        opset: int = DEFAULT_OPSET) -> tuple[TfExport, list[TfSignature], Any]:
    """Export a SavedModel's ``serving_default`` signature; returns the export, its inputs and a callable."""
    from converter.frameworks import tensorflow

    tf = tensorflow()
    try:
        loaded = tf.saved_model.load(path)
    except Exception as err:  # noqa: BLE001
        raise ModelFileError(f"{path}: not a readable SavedModel ({_line(str(err))})") from err
    if "serving_default" not in getattr(loaded, "signatures", {}):
        raise ModelFileError(f"{path}: SavedModel has no serving_default signature")
    fn = loaded.signatures["serving_default"]
    spec = fn.structured_input_signature[1]
    names = list(spec)
    shapes = [tuple(spec[n].shape.as_list()) for n in names]
    if given:
        if len(given) != len(names):
            raise ShapeError(f"--input-shape given {len(given)} times; the SavedModel has {len(names)} inputs")
        shapes = [tuple(g) for g in given]
    sigs = [TfSignature(n, s, spec[n].dtype.name) for n, s in zip(names, shapes)]
    out_keys = sorted(fn.structured_outputs, key=_output_key)
    tf_sig = [tf.TensorSpec(s.shape, spec[s.name].dtype, name=s.name) for s in sigs]

    @tf.function(input_signature=tf_sig)
    def serve(*args: Any) -> Any:
        out = fn(**dict(zip(names, args)))
        return [out[k] for k in out_keys]

    proto = _export_fn(serve, tf_sig, onnx_path, opset)
    export = TfExport(onnx_path, "tf2onnx (SavedModel signature)", opset, tuple(i.name for i in proto.graph.input),
                      tuple(out_keys), any(s.shape and s.shape[0] is None for s in sigs))

    def call(feeds: list[Any]) -> list[Any]:
        out = fn(**{n: tf.constant(f) for n, f in zip(names, feeds)})
        return [out[k].numpy() for k in out_keys]

    call.keep = loaded  # type: ignore[attr-defined] - keep the loaded object (and its variables) alive
    return export, sigs, call


def _output_key(name: str) -> tuple[int, str]:
    tail = name.rsplit("_", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (0, name)


def _line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[0][:200] if lines else ""


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


def _conv_kernels(model: Any) -> list[Any]:
    """Keras Conv2D kernels as ONNX (O, I, kH, kW) arrays, and their biases (or None)."""
    import keras
    import numpy as np

    out = []
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.Conv2D) and layer.built and len(layer.kernel.shape) == 4:
            k = np.asarray(layer.kernel.numpy(), np.float32).transpose(3, 2, 0, 1)
            b = np.asarray(layer.bias.numpy(), np.float32) if getattr(layer, "bias", None) is not None else None
            out.append((k, b))
    return out


def _restore_conv_batchnorm(proto: Any, layers: list[tuple[Any, Any, Any, Any, float]],
                            kernels: list[Any]) -> int:
    """Undo grappler's MulConvPushDown: ``Conv(x, K * scale, shift)`` -> ``BatchNormalization(Conv(x, K))``."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    if not layers or not kernels:
        return 0
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    restored = 0
    used: set[int] = set()
    for node in list(graph.node):
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        w = numpy_helper.to_array(inits[node.input[1]])
        bias = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] in inits \
            else None
        hit = None
        for k, (gamma, beta, mean, var, eps) in enumerate(layers):
            if k in used or gamma.size != w.shape[0]:
                continue
            scale = (gamma / np.sqrt(var + np.float32(eps))).astype(np.float32)
            shift = (beta - mean * scale).astype(np.float32)
            for kernel, kbias in kernels:
                if kernel.shape != w.shape or not np.allclose(kernel * scale[:, None, None, None], w, rtol=1e-5,
                                                              atol=1e-7):
                    continue
                expected_bias = shift if kbias is None else kbias * scale + shift
                if bias is None:  # an all-zero bias Add is dropped by the exporter
                    bias = np.zeros_like(expected_bias)
                if np.allclose(bias, expected_bias, rtol=1e-5, atol=1e-6):
                    hit = (k, kernel, kbias)
                    break
            if hit:
                break
        if hit is None:
            continue
        k, kernel, kbias = hit
        used.add(k)
        gamma, beta, mean, var, eps = layers[k]
        base = f"crossport_convbn_{restored}"
        graph.initializer.append(numpy_helper.from_array(kernel, f"{base}_kernel"))
        conv_inputs = [node.input[0], f"{base}_kernel"]
        if kbias is not None:
            graph.initializer.append(numpy_helper.from_array(kbias, f"{base}_bias"))
            conv_inputs.append(f"{base}_bias")
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


def _batchnorm_weights(model: Any) -> list[tuple[Any, Any, Any, Any, float]]:
    """(gamma, beta, moving_mean, moving_variance, epsilon) per Keras BatchNormalization layer."""
    import keras
    import numpy as np

    out = []
    for layer in _all_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.built:
            continue
        mean = np.asarray(layer.moving_mean.numpy(), np.float32)
        var = np.asarray(layer.moving_variance.numpy(), np.float32)
        gamma = np.asarray(layer.gamma.numpy(), np.float32) if layer.gamma is not None else np.ones_like(mean)
        beta = np.asarray(layer.beta.numpy(), np.float32) if layer.beta is not None else np.zeros_like(mean)
        out.append((gamma, beta, mean, var, float(layer.epsilon)))
    return out


def _restore_batchnorm(proto: Any, layers: list[tuple[Any, Any, Any, Any, float]]) -> int:
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
    for gamma, beta, mean, var, eps in layers:
        scale = gamma / np.sqrt(var + np.float32(eps))
        folded.append((scale.astype(np.float32), (beta - mean * scale).astype(np.float32), gamma, beta, mean, var,
                       eps))
    used: set[int] = set()
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
        match = next((k for k, f in enumerate(folded) if k not in used and f[0].size == channels
                      and np.allclose(f[0], s.reshape(-1), rtol=1e-5, atol=1e-7)
                      and np.allclose(f[1], t.reshape(-1), rtol=1e-5, atol=1e-6)), None)
        if match is None:
            continue
        used.add(match)
        _, _, gamma, beta, mean, var, eps = folded[match]
        base = f"crossport_bn_{restored}"
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


def _restore_zero_biases(proto: Any, model: Any) -> int:
    """Give MatMul/Conv nodes whose weight is a Keras kernel with an all-zero bias that zero bias back."""
    import keras
    import numpy as np
    import onnx
    from onnx import numpy_helper

    wanted: list[tuple[Any, Any, str]] = []  # (onnx weight layout, zero bias, op)
    for layer in _all_layers(model):
        bias = getattr(layer, "bias", None)
        kernel = getattr(layer, "kernel", None)
        if bias is None or kernel is None or not layer.built:
            continue
        b = np.asarray(bias.numpy(), np.float32)
        if b.ndim != 1 or np.any(b != 0):
            continue
        k = np.asarray(kernel.numpy(), np.float32)
        if isinstance(layer, keras.layers.Dense) and k.ndim == 2:
            wanted.append((k, b, "MatMul"))
        elif isinstance(layer, keras.layers.Conv2D) and k.ndim == 4:
            wanted.append((k.transpose(3, 2, 0, 1), b, "Conv"))
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
