"""Save a Keras 3 model as ``.keras``, a TF Serving SavedModel, or ``.tflite``.

Speed note (upstream.md): onnx2tf spends ~95 % of a ResNet-18 conversion in tf_keras' legacy per-layer SavedModel
metadata serialization, three times. We never go through that path: the SavedModel is written by Keras 3's
``ExportArchive`` (a traced ``serve`` function, no per-layer Keras metadata), TFLite is converted from a concrete
function, and only the artifacts the user asked for are produced.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from converter.errors import UnsupportedError


def _signature(model: Any) -> list[Any]:
    import tensorflow as tf

    return [tf.TensorSpec(shape=tuple(t.shape), dtype=t.dtype, name=t.name.split(":")[0]) for t in model.inputs]


def save_keras(model: Any, path: Path) -> None:
    model.save(str(path))


def signature_output_names(model: Any) -> tuple[str, ...]:
    """Output keys of the serving signature: the Keras output layer names (named after the source's outputs)."""
    return tuple(t._keras_history[0].name for t in model.outputs)  # noqa: SLF001 - Keras' public-ish history


def save_saved_model(model: Any, path: Path) -> tuple[str, ...]:
    """A SavedModel whose ``serving_default`` signature takes the named inputs and returns named outputs."""
    import keras

    names = signature_output_names(model)

    def serve(*args: Any) -> dict[str, Any]:
        out = model(list(args), training=False)
        outs = out if isinstance(out, (list, tuple)) else [out]
        return dict(zip(names, outs))

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=serve, input_signature=_signature(model))
    archive.write_out(str(path), verbose=False)
    return names


def save_tflite(model: Any, path: Path, fp16: bool = False) -> list[str]:
    """Write ``.tflite``; returns notes for the report (e.g. when TF ops had to be embedded)."""
    import tensorflow as tf

    spec = _signature(model)

    @tf.function(input_signature=spec)
    def serve(*args: Any) -> Any:
        return model(list(args) if len(args) > 1 else args[0], training=False)

    # Keras 3 variables are not tracked by the TFLite converter, which then emits READ_VARIABLE ops that fail at
    # run time; freezing the concrete function into constants avoids that (and the SavedModel round trip).
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = convert_variables_to_constants_v2(serve.get_concrete_function())
    notes: list[str] = []

    def make(select_tf_ops: bool, keep_tensor_lists: bool = False) -> Any:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete])
        if fp16:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        if select_tf_ops:
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        if keep_tensor_lists:
            # A Keras RNN is a while loop over TensorLists; with a dynamic batch their element shape is not static
            # and lowering them fails ("tf.TensorListReserve op requires element_shape to be static"). Kept as TF
            # ops they run through the Flex delegate; the converter's own error suggests exactly this (tensorflow/
            # tensorflow#53101, #62849).
            converter._experimental_lower_tensor_list_ops = False  # noqa: SLF001 - the documented switch
        return converter

    try:
        blob = make(False).convert()
    except Exception as err:  # noqa: BLE001
        text = str(err)
        missing = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
        tensor_lists = "TensorList" in text and "element_shape to be static" in text
        if not missing and not tensor_lists:
            raise UnsupportedError(f"TFLite conversion failed: {_last_line(text)}") from err
        # e.g. exact GELU lowers to tf.Erf, which has no TFLite builtin: embed those TF ops (needs the Flex
        # delegate at deployment; the Python interpreter has it).
        try:
            blob = make(True, keep_tensor_lists=tensor_lists).convert()
        except Exception as err2:  # noqa: BLE001
            raise UnsupportedError(f"TFLite conversion failed: {_last_line(str(err2))}") from err2
        what = ", ".join(missing) if missing else "the recurrent loop's TensorList ops"
        notes.append(f"TFLite uses Select TF ops ({what}): deploy with the Flex delegate")
    Path(path).write_bytes(blob)
    return notes


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.strip().splitlines() if "error:" in l]
    return (lines[0] if lines else text.strip().splitlines()[-1])[:300]
