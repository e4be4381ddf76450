"""Saving what onnx2tf built: a ``tf.Module`` holding only the variables and one traced ``serve`` function, written
as a SavedModel or a TFLite flatbuffer (no Keras per-layer metadata, which onnx2tf's tf_keras models break)."""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from converter.errors import UnsupportedError

SIGNATURE_KEY = "serving_default"


def clean_name(name: str) -> str:
    """A name legal as a TF signature key / TensorSpec name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-/]", "_", name.split(":")[0]).lstrip("/")
    # TF op names must match ^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$ (the same rule behind onnx2tf's "-osd" advice).
    if not cleaned or not re.match(r"[A-Za-z0-9.]", cleaned[0]):
        cleaned = "t" + cleaned
    return cleaned


def serving_function(tf: Any, model: Any, names_in: tuple[str, ...], names_out: tuple[str, ...]) -> tuple[Any, Any]:
    """A ``tf.Module`` that tracks the model's variables (not the Keras model) and a traced ``serve`` function."""
    spec = [tf.TensorSpec(shape=t.shape, dtype=t.dtype, name=n) for t, n in zip(model.inputs, names_in)]

    @tf.function(input_signature=spec)
    def serve(*args: Any) -> dict[str, Any]:
        outputs = model(list(args) if len(args) > 1 else args[0], training=False)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        return {name: tf.identity(out, name=name.replace("/", "_")) for name, out in zip(names_out, outputs)}

    holder = tf.Module()
    # Tracking the variables, not the tf_keras model, keeps tf.saved_model.save out of tf_keras' per-layer
    # metadata serialization (upstream.md: ~95 % of onnx2tf's ResNet-18 time).
    holder.model_variables = list(model.variables)
    holder.serve = serve
    return holder, serve.get_concrete_function()


def save_saved_model(tf: Any, holder: Any, concrete: Any, model: Any, path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    try:
        try:
            tf.saved_model.save(holder, str(path), signatures={SIGNATURE_KEY: concrete})
        except (AssertionError, KeyError, ValueError) as err:
            # "Tried to export a function which references an 'untracked' resource" (onnx2tf handles the same error
            # from its own save): a layer owns a resource other than its variables (e.g. a lookup table). Fall back
            # to saving the tf_keras model itself — slow (per-layer metadata) but it tracks every resource.
            if "untracked" not in str(err):
                raise
            shutil.rmtree(path, ignore_errors=True)
            tf.saved_model.save(model, str(path), signatures={SIGNATURE_KEY: concrete})
    except Exception as err:  # noqa: BLE001 - TF raises many types here
        shutil.rmtree(path, ignore_errors=True)
        raise UnsupportedError(f"writing the SavedModel failed: {first_line(str(err))}") from err


def save_tflite(tf: Any, holder: Any, concrete: Any, *, fp16: bool) -> bytes:
    # onnx2tf uses TFLiteConverter.from_keras_model, which saves the tf_keras model to a temporary SavedModel (with
    # the slow per-layer metadata). from_concrete_functions with our light tf.Module lowers through a SavedModel of
    # that module instead (the MLIR saved-model path, same op coverage), without Keras metadata.
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], holder)
    # Same op sets as onnx2tf: builtins, plus TF ops where TFLite has no builtin (needs the Flex delegate).
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        return converter.convert()
    except Exception as err:  # noqa: BLE001 - the TFLite converter raises ConverterError and others
        kind = "float16" if fp16 else "float32"
        raise UnsupportedError(f"TFLite {kind} conversion failed: {first_line(str(err))}") from err


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def first_line(text: str) -> str:
    for line in ANSI.sub("", text).strip().splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ")):
            return line[:300]
    return ""
