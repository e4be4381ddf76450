"""Save a Keras 3 model as ``.keras``, a TF Serving SavedModel, or ``.tflite``.

Speed note (upstream.md): onnx2tf spends ~95 % of a ResNet-18 conversion in tf_keras' legacy per-layer SavedModel
metadata serialization, three times. We never go through that path: the SavedModel is written by Keras 3's
``ExportArchive`` (a traced ``serve`` function, no per-layer Keras metadata), the TF converter's TFLite (quantized
files, and models crossport's direct writer ``converter.tflite_writer`` does not map) is converted from that
SavedModel, and only the artifacts the user asked for are produced.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

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


def save_tflite(model: Any, path: Path, fp16: bool = False, *, quantize: str | None = None,
                representative: Sequence[Sequence[np.ndarray]] | None = None, allow_flex: bool = False) -> list[str]:
    """Write ``.tflite``; returns notes for the report.

    ``quantize``: ``fp16`` (float16 weights; ``fp16=True`` is the same), ``dynamic`` (int8 weights, float
    activations), ``int8`` (full integer, float inputs/outputs) or ``int8-full`` (full integer, int8 inputs/outputs);
    the integer modes calibrate activation ranges on ``representative`` (one list of batch-1 feeds per sample, in
    the model's own input layout). A file that needs Select TF (Flex) ops does not run on LiteRT: refused unless
    ``allow_flex``."""
    import tempfile

    import tensorflow as tf

    mode = quantize or ("fp16" if fp16 else None)
    # Keras 3 variables are not tracked by a converter fed a concrete function (it emits READ_VARIABLE ops that fail
    # at run time); freezing them into constants (convert_variables_to_constants_v2) cost 7.8 s and +3 GB on
    # ViT-B/16 and the conversion of the frozen graph 19 s and +4.8 GB. A SavedModel written by ExportArchive keeps
    # them as variables the converter reads itself: 5 s + 11.5 s, 2.2 GB beyond the model.
    input_keys = [s.name for s in _signature(model)]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".tflite-sm-", dir=Path(path).parent) as holder:
        saved = Path(holder) / "saved_model"
        save_saved_model(model, saved)
        blob = _convert(tf, saved, mode, representative, input_keys, allow_flex, notes)
    Path(path).write_bytes(blob)
    return notes


def _convert(tf: Any, saved: Path, mode: str | None, representative: Sequence[Sequence[np.ndarray]] | None,
             input_keys: list[str], allow_flex: bool, notes: list[str]) -> bytes:
    """The TF converter on ``saved``; Select TF (Flex) ops only where the plain conversion names them."""

    def make(select_tf_ops: bool, keep_tensor_lists: bool = False) -> Any:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
        _configure_quantization(tf, converter, mode, representative, input_keys)
        if select_tf_ops and mode not in ("int8", "int8-full"):
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        if keep_tensor_lists:
            # A Keras RNN is a while loop over TensorLists; with a dynamic batch their element shape is not static
            # and lowering them fails ("tf.TensorListReserve op requires element_shape to be static"). Kept as TF
            # ops they run through the Flex delegate; the converter's own error suggests exactly this (tensorflow/
            # tensorflow#53101, #62849).
            converter._experimental_lower_tensor_list_ops = False  # noqa: SLF001 - the documented switch
        return converter

    try:
        return make(False).convert()
    except Exception as err:  # noqa: BLE001
        text = str(err)
        missing = sorted(set(re.findall(r"'(tf\.\w+)' op is neither a custom op nor a flex op", text)))
        tensor_lists = "TensorList" in text and "element_shape to be static" in text
        if not missing and not tensor_lists:
            what = f"TFLite {mode} quantization failed" if mode in ("int8", "int8-full") else "TFLite conversion failed"
            hint = "; try --quantize dynamic, which keeps float activations" if mode in ("int8", "int8-full") else ""
            raise UnsupportedError(f"{what}: {_last_line(text)}{hint}") from err
        what = ", ".join(missing) if missing else "the recurrent loop's TensorList ops"
        if not allow_flex:
            # LiteRT (ai_edge_litert) has no Flex delegate: such a file is not deployable there.
            raise UnsupportedError(f"TFLite needs Select TF (Flex) ops ({what}), which LiteRT cannot run; pass "
                                   "--allow-flex to write it anyway (deploy with TensorFlow's Flex delegate)") from err
        if mode in ("int8", "int8-full"):
            raise UnsupportedError(f"TFLite {mode} quantization cannot keep Select TF (Flex) ops ({what}); "
                                   "use --quantize dynamic or fp16") from err
        # e.g. a TF op without a TFLite builtin: embed those TF ops (needs the Flex delegate at deployment; TF's
        # Python interpreter has it).
        try:
            blob = make(True, keep_tensor_lists=tensor_lists).convert()
        except Exception as err2:  # noqa: BLE001
            raise UnsupportedError(f"TFLite conversion failed: {_last_line(str(err2))}") from err2
        notes.append(f"TFLite uses Select TF ops ({what}) because of --allow-flex: it does not run on LiteRT; "
                     "deploy with TensorFlow's Flex delegate")
        return blob


def _configure_quantization(tf: Any, converter: Any, mode: str | None,
                            representative: Sequence[Sequence[np.ndarray]] | None, input_keys: list[str]) -> None:
    """The TFLite converter settings of each ``--quantize`` mode (the converter's documented post-training
    quantization recipes)."""
    if mode is None:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "fp16":
        converter.target_spec.supported_types = [tf.float16]
        return
    if mode == "dynamic":
        return
    if not representative:
        raise UnsupportedError(f"--quantize {mode} needs calibration samples")
    samples = [list(s) for s in representative]

    def dataset() -> Any:
        for feeds in samples:
            # keyed by signature input name: a SavedModel signature lists its inputs sorted, not in model order
            yield {k: np.ascontiguousarray(f) for k, f in zip(input_keys, feeds)}

    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if mode == "int8-full":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


def _last_line(text: str) -> str:
    lines = [l.strip() for l in text.strip().splitlines() if "error:" in l]
    return (lines[0] if lines else text.strip().splitlines()[-1])[:300]
