"""Keras (.keras / .h5) and SavedModel -> ONNX with tf2onnx (the library Keras' own ``export(format="onnx")``
calls on the TensorFlow backend). Every tf2onnx / Keras-export workaround lives here.

- ``Model.export(format="onnx")`` refuses a loaded model that was never called ("The model provided has never
  called") and ``tf2onnx.convert.from_keras`` breaks on Keras 3 (tf2onnx#2329, #2348): we trace our own
  ``tf.function`` with an explicit ``input_signature`` (the documented workaround) and call
  ``tf2onnx.convert.from_function``.
- tf2onnx's back-to-back optimizer folds BatchNormalization into the preceding Conv. That is fine for inference
  but deletes BN's trainable gamma/beta, so the PyTorch model could not be fine-tuned like the Keras one: the fusion
  is switched off for our export only.
- Keras 3 BatchNormalization folded into constants, dropped zero biases and TF's ``Erfc``: repaired after the
  export in ``tf_onnx_repair`` (pure ONNX rewrites, documented there).
- Memory: tf2onnx's graph optimizers run on a deep copy of the whole graph each (``_optimizers_in_place``); the
  rest of its copies of every weight (NodeProto rewrites, the freeze, a conversion done twice) are cut in
  ``tf_onnx_lean``.
- tf2onnx recognises Keras 3's LSTM loop as an ONNX LSTM but leaves GRU (reset_after) as a ``Loop``, which
  onnx2torch cannot convert: when a Loop remains and the recurrent layers have a fixed sequence length, we
  re-export a clone with ``unroll=True`` (same weights, same maths, no Loop).
- Keras 3's TF backend runs grouped convolutions (ConvNeXt's depthwise ``Conv2D(groups=C)``) in a nested
  ``tf.function(jit_compile=True)`` (TF's CPU kernel lacks grouped Conv2D). Grappler never inlines a function
  marked ``_XlaMustCompile`` / ``_noinline``, so tf2onnx (1.17) left it as a ``StatefulPartitionedCall`` node that
  onnxruntime and onnx2torch refuse. ``_xla_calls_inlined`` drops those marks from the frozen ``GraphDef`` before
  grappler: the call is inlined to a plain ``Conv2D``, which tf2onnx writes as an ONNX ``Conv`` with ``group=``.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from converter.errors import ModelFileError, ShapeError, UnsupportedError
from converter.memory import release_memory

DEFAULT_OPSET = 17
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
    trainable: tuple[Any, ...] | None = None  # the source's trainable weights, when it says which they are


@dataclass(frozen=True)
class TfSignature:
    """One model input as Keras/TF sees it (channels-last as stored)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


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


@contextlib.contextmanager
def _xla_calls_inlined() -> Iterator[None]:
    """Let grappler inline the XLA-compiled functions of a frozen graph (see module doc) for one export:
    ``tf_loader.tf_optimize`` runs grappler on every frozen ``GraphDef``, tf2onnx's own freeze and ours alike."""
    from tf2onnx import tf_loader

    original = tf_loader.tf_optimize

    def tf_optimize(input_names: Any, output_names: Any, graph_def: Any) -> Any:
        _drop_xla_marks(graph_def)
        return original(input_names, output_names, graph_def)

    tf_loader.tf_optimize = tf_optimize
    try:
        yield
    finally:
        tf_loader.tf_optimize = original


def _drop_xla_marks(graph_def: Any) -> int:
    """Remove ``_XlaMustCompile`` (and the ``_noinline`` that comes with it) from the functions that carry it and
    from the nodes that call them; returns how many functions were unmarked. Other functions stay as they were."""
    xla = {f.signature.name for f in graph_def.library.function
           if "_XlaMustCompile" in f.attr and f.attr["_XlaMustCompile"].b}
    if not xla:
        return 0
    for fdef in graph_def.library.function:
        if fdef.signature.name in xla:
            for key in ("_XlaMustCompile", "_noinline"):
                fdef.attr.pop(key, None)
    callers = [*graph_def.node, *(n for f in graph_def.library.function for n in f.node_def)]
    for node in callers:
        if "f" in node.attr and node.attr["f"].func.name in xla:
            node.attr.pop("_XlaMustCompile", None)
    return len(xla)


@contextlib.contextmanager
def _optimizers_in_place(enabled: bool) -> Iterator[None]:
    """tf2onnx's ``optimizer.optimize_graph`` (``catch_errors=True``, its default unless ``large_model``) deep-copies
    the whole graph -- every constant included -- before each of its ~12 optimizers, on every pass, so that a failing
    optimizer can be skipped. Garbage from those copies took ResNet50's export (103 MB of weights) from 2.2 GB to an
    8.4 GB peak. ``TF2ONNX_CATCH_ERRORS=FALSE`` (read per conversion in ``tf2onnx.convert._convert_common``) runs
    them in place; ``_export_fn`` retries with copies when an optimizer then raises."""
    from tf2onnx import constants

    key = constants.ENV_TF2ONNX_CATCH_ERRORS
    saved = os.environ.get(key)
    if enabled:
        os.environ[key] = "FALSE"
    try:
        yield
    finally:
        if enabled:
            if saved is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = saved


def _raised_in_optimizer(err: BaseException) -> bool:
    """Did ``err`` come out of one of tf2onnx's graph optimizers (``tf2onnx/optimizer/``)?"""
    tb = err.__traceback__
    while tb is not None:
        if "tf2onnx" in tb.tb_frame.f_code.co_filename and "optimizer" in tb.tb_frame.f_code.co_filename:
            return True
        tb = tb.tb_next
    return False


def _export_fn(fn: Any, sig: list[Any], opset: int) -> Any:
    """The ONNX ModelProto, not yet saved: the caller repairs it and writes it once (``_repair``)."""
    import tf2onnx

    from converter.frameworks import silenced_stderr

    from converter.adapters import tf_onnx_lean

    with _keep_batchnorm(), _xla_calls_inlined(), tf_onnx_lean.lean_tf2onnx(), silenced_stderr(), _quiet_tf2onnx():
        for in_place in (True, False):
            try:
                with _optimizers_in_place(in_place):
                    model_proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=opset)
                break
            except Exception as err:  # noqa: BLE001 - tf2onnx raises whatever TF raised
                if in_place and _raised_in_optimizer(err):  # redo the export the way tf2onnx skips a failing one
                    continue
                raise UnsupportedError(f"tf2onnx could not convert the model: {_line(str(err))}") from err
    _captured_constants_as_initializers(model_proto, fn, {s.name for s in sig})
    return model_proto


def _captured_constants_as_initializers(proto: Any, fn: Any, signature_names: set[str]) -> bool:
    """tf2onnx freezes captured *variables* but leaves captured plain tensors as graph inputs: Keras 3's
    Normalization keeps its mean/variance as tensors (EfficientNet), so the ONNX graph demands inputs
    ``.../normalization/Sub/y:0`` nobody can feed. Their values are known: make them initializers."""
    import tensorflow as tf
    from onnx import numpy_helper

    captured = {}
    for external, internal in fn.get_concrete_function().graph.captures:
        if external.dtype != tf.resource and hasattr(external, "numpy"):
            captured[internal.name] = external
    extra = [i for i in proto.graph.input if i.name in captured and i.name.split(":")[0] not in signature_names]
    for inp in extra:
        proto.graph.initializer.append(numpy_helper.from_array(captured[inp.name].numpy(), inp.name))
        proto.graph.input.remove(inp)
    return bool(extra)


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
    proto = _export_keras(model, signature, opset)
    if any(n.op_type in ("Loop", "Scan", "If") for n in proto.graph.node):
        unrolled = _unrolled_clone(model)
        if unrolled is not None and all(s.shape[1:] and None not in s.shape[1:] for s in signature):
            proto = _export_keras(unrolled, signature, opset)
            notes.append("tf2onnx left a recurrent layer as an ONNX Loop (no ONNX GRU for reset_after); exported "
                         "the recurrent layers unrolled over the fixed sequence length instead")
    del tf
    from converter.adapters.tf_onnx_repair import weights_from_keras

    weights = weights_from_keras(model)
    notes.extend(_repair(proto, weights, path))
    loops = sorted({n.op_type for n in proto.graph.node if n.op_type in ("Loop", "Scan", "If")})
    if loops:
        raise UnsupportedError(f"the ONNX export contains control flow ({', '.join(loops)}) that onnx2torch cannot "
                               "convert; give recurrent layers a fixed sequence length (--input-shape)")
    return TfExport(path, "tf2onnx (tf.function trace)", opset, tuple(i.name for i in proto.graph.input),
                    tuple(o.name for o in proto.graph.output), any(s.shape and s.shape[0] is None
                                                                     for s in signature), tuple(notes),
                    weights.trainable)


def _export_keras(model: Any, signature: list[TfSignature], opset: int) -> Any:
    import tensorflow as tf

    sig = [tf.TensorSpec(s.shape, tf.as_dtype(s.dtype), name=_tf_name(s.name, i)) for i, s in enumerate(signature)]

    from converter import keras_io

    @tf.function(input_signature=sig)
    def serve(*args: Any) -> Any:
        out = model(keras_io.pack(model, list(args)), training=False)
        flat = keras_io.flatten(out)
        return flat if len(flat) > 1 else flat[0]

    return _export_fn(serve, sig, opset)


def _repair(proto: Any, weights: Any, path: Path) -> list[str]:
    """Repair the export in place and write it to ``path`` -- the one serialization of the model (tf2onnx's own
    ``output_path`` save before the repairs was a second full copy of every weight on disk and in memory)."""
    import onnx

    from converter.adapters.tf_onnx_repair import repair

    done = repair(proto, weights)
    onnx.save(proto, str(path))
    notes = []
    if done.batchnorm:
        notes.append(f"restored {done.batchnorm} BatchNormalization node(s) that TF had folded into constants")
    if done.scaled_convs:
        notes.append(f"restored {done.scaled_convs} convolution(s) whose constant output scale TF had folded into "
                     "the kernel (Conv then Mul: the kernel stays the trainable source weight)")
    if done.zero_biases:
        notes.append(f"put back {done.zero_biases} all-zero bias(es) the export had dropped (they stay trainable)")
    return notes


def _tf_name(name: str, index: int) -> str:
    import re

    clean = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name.split(":")[0])
    return clean if clean and clean[0].isalpha() else f"input_{index}"


def _unrolled_clone(model: Any) -> Any:
    """A clone of ``model`` whose recurrent layers have ``unroll=True`` (same weights), or None."""
    import keras

    rnn_types = (keras.layers.RNN,)
    from converter.adapters.tf_onnx_repair import all_layers

    found = [l for l in all_layers(model) if isinstance(l, rnn_types)]
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

    proto = _export_fn(serve, tf_sig, opset)
    from converter.adapters.tf_onnx_repair import weights_from_variables

    weights = weights_from_variables(getattr(loaded, "variables", ()))
    notes = _repair(proto, weights, onnx_path)
    export = TfExport(onnx_path, "tf2onnx (SavedModel signature)", opset, tuple(i.name for i in proto.graph.input),
                      tuple(out_keys), any(s.shape and s.shape[0] is None for s in sigs), tuple(notes),
                      weights.trainable if weights.trainable else None)

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
