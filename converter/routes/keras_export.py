"""Save a Keras 3 model as ``.keras``, a TF Serving SavedModel, or ``.tflite``.

Speed note (upstream.md): onnx2tf spends ~95 % of a ResNet-18 conversion in tf_keras' legacy per-layer SavedModel
metadata serialization, three times. We never go through that path: the SavedModel is written by Keras 3's
``ExportArchive`` (a traced ``serve`` function, no per-layer Keras metadata), TFLite is converted from a concrete
function, and only the artifacts the user asked for are produced.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from converter.errors import UnsupportedError


def _signature(model: Any) -> list[Any]:
    import tensorflow as tf

    return [tf.TensorSpec(shape=tuple(t.shape), dtype=t.dtype, name=t.name.split(":")[0]) for t in model.inputs]


def save_keras(model: Any, path: Path) -> None:
    model.save(str(path))


def save_saved_model(model: Any, path: Path) -> None:
    """A SavedModel with a ``serving_default`` signature taking the model's named inputs (TF Serving-ready)."""
    import keras

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(name="serve", fn=lambda *args: model(list(args) if len(args) > 1 else args[0],
                                                              training=False),
                         input_signature=_signature(model))
    archive.write_out(str(path), verbose=False)


def save_tflite(model: Any, path: Path, fp16: bool = False) -> None:
    import tensorflow as tf

    spec = _signature(model)

    @tf.function(input_signature=spec)
    def serve(*args: Any) -> Any:
        return model(list(args) if len(args) > 1 else args[0], training=False)

    concrete = serve.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    if fp16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    try:
        blob = converter.convert()
    except Exception as err:  # noqa: BLE001
        raise UnsupportedError(f"TFLite conversion failed: {str(err).strip().splitlines()[-1][:300]}") from err
    Path(path).write_bytes(blob)
