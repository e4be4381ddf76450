"""One runner per framework/runtime behind one small interface.

A runner takes feeds in *its own* input layout and returns outputs in its own output layout; callers move
tensors between layouts with ``converter.layout.to_layout`` using the runner's declared ``input_layouts`` /
``output_layouts``. Every runner evaluates in inference mode (eval / training=False).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from converter.layout import Layout


class Runner(Protocol):
    name: str
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]: ...


@dataclass
class TorchRunner:
    module: Any
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str = "pytorch"
    output_names: tuple[str, ...] = ()  # set by run() when the model returns a dict / ModelOutput
    # The last run's feeds and seconds: a latency measurement on the same feeds counts it as its first sample.
    last_call: tuple[tuple[np.ndarray, ...], float] | None = field(default=None, repr=False, compare=False)

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch

        t0 = time.perf_counter()
        if hasattr(self.module, "eval"):
            try:
                self.module.eval()
            except NotImplementedError:
                pass  # torch.export's module(): already traced in eval mode, and refuses .eval()
        with torch.no_grad():
            out = self.module(*[torch.from_numpy(np.ascontiguousarray(f)) for f in feeds])
        outs, self.output_names = flatten_outputs(out)
        result = [o.detach().cpu().numpy() for o in outs]
        self.last_call = (tuple(feeds), time.perf_counter() - t0)
        return result


def flatten_outputs(out: Any) -> tuple[list[Any], tuple[str, ...]]:
    """A model's outputs as a flat list of tensors, in the order ``torch.export``/``torch.onnx`` flatten them
    (pytree order), with names when the model returns a dict or a Hugging Face ``ModelOutput``
    (``last_hidden_state``, ``hidden_states.1``); ``None`` fields are skipped, as the exporters skip them."""
    import torch
    from torch.utils._pytree import MappingKey, SequenceKey, tree_flatten_with_path

    if isinstance(out, torch.Tensor):
        return [out], ()
    leaves = [(path, leaf) for path, leaf in tree_flatten_with_path(out)[0] if leaf is not None]

    def name(path: tuple[Any, ...]) -> str:
        return ".".join(str(k.key) if isinstance(k, MappingKey) else str(k.idx) if isinstance(k, SequenceKey)
                        else str(getattr(k, "name", k)) for k in path)

    bad = [(name(p), type(v).__name__) for p, v in leaves if not isinstance(v, torch.Tensor)]
    if bad or not leaves:
        from converter.errors import UnsupportedError

        what = f"{bad[0][1]} at output {bad[0][0]!r}" if bad else f"no tensors ({type(out).__name__})"
        raise UnsupportedError(f"the model returns {what}; outputs must be tensors, or tuples, lists, dicts or "
                               "dataclass outputs of tensors")
    named = any(isinstance(k, MappingKey) or not isinstance(k, SequenceKey) for p, _ in leaves for k in p)
    return [v for _, v in leaves], (tuple(name(p) for p, _ in leaves) if named else ())


@dataclass
class OnnxRunner:
    path: Path
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str = "onnxruntime"
    _session: Any = field(default=None, repr=False)

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        import onnxruntime as ort

        if self._session is None:
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in self._session.get_inputs()]
        return list(self._session.run(None, dict(zip(names, feeds))))

    def release(self) -> None:
        """Drop the session (a copy of every weight plus onnxruntime's arena); the next ``run`` reopens it."""
        self._session = None


@dataclass
class KerasRunner:
    model: Any
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str = "keras"

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        from converter import keras_io

        out = self.model(keras_io.pack(self.model, feeds), training=False)
        return [np.asarray(o) for o in keras_io.flatten(out)]


@dataclass
class SavedModelRunner:
    path: Path
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str = "tf-savedmodel"
    output_keys: tuple[str, ...] = ()  # signature output names in model order, when known
    input_keys: tuple[str, ...] = ()  # signature input names in model order, when known
    _fn: Any = field(default=None, repr=False)

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        if self._fn is None:
            loaded = tf.saved_model.load(str(self.path))
            self._keep = loaded
            self._fn = loaded.signatures["serving_default"]
        spec = self._fn.structured_input_signature[1]
        names = list(self.input_keys) if self.input_keys else list(spec)
        if len(names) != len(feeds):
            raise ValueError(f"the SavedModel signature takes {len(names)} inputs, got {len(feeds)}")
        for n, f in zip(names, feeds):
            # A shape that does not fit aborts inside TF's C++ runtime; refuse it here instead.
            if not spec[n].shape.is_compatible_with(f.shape):
                raise ValueError(f"input {n!r}: shape {list(f.shape)} does not fit the signature {spec[n].shape}")
        out = self._fn(**{n: tf.constant(f) for n, f in zip(names, feeds)})
        keys = list(self.output_keys) if self.output_keys else sorted(out, key=_output_key)
        return [out[k].numpy() for k in keys]


def _output_key(name: str) -> tuple[int, str]:
    tail = name.rsplit("_", 1)[-1]
    return (int(tail), name) if tail.isdigit() else (0, name)


@dataclass
class TFLiteRunner:
    """A ``.tflite`` in LiteRT. Integer inputs/outputs of a full-integer file (``--quantize int8-full``) are fed and
    read through their scale and zero point, so callers always see float tensors.

    One interpreter serves every run, resized to each feed's shape as a deployment would: opening the file again
    per input set repacked every weight for XNNPACK each time (ViT-B/16: 0.18 s to allocate each interpreter, and
    a packed copy of the weights). Its variable tensors (a recurrent layer's state) are reset before each run, so
    no run sees another's state."""

    path: Path
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str = "tflite"
    input_keys: tuple[str, ...] = ()  # signature input/output names, when the file has a signature with them
    output_keys: tuple[str, ...] = ()
    _interp: Any = field(default=None, repr=False, compare=False)
    last_call: tuple[tuple[np.ndarray, ...], float] | None = field(default=None, repr=False, compare=False)

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        from converter.frameworks import silenced_stderr, tflite_interpreter

        if self.input_keys and self.output_keys:
            with silenced_stderr():
                interp = tflite_interpreter(str(self.path), num_threads=2)
                runner = interp.get_signature_runner()
                out = runner(**{k: np.ascontiguousarray(f) for k, f in zip(self.input_keys, feeds)})
            return [np.asarray(out[k]) for k in self.output_keys]
        with silenced_stderr():  # "Created TensorFlow Lite XNNPACK delegate" is printed from C++
            interp, invoke = self._prepared(feeds)
            t0 = time.perf_counter()
            invoke()
            self.last_call = (tuple(feeds), time.perf_counter() - t0)  # what timed() times: the invoke
            return [dequantize(interp.get_tensor(d["index"]), d) for d in interp.get_output_details()]

    def release(self) -> None:
        """Drop the interpreter (its packed weights); the next ``run`` opens the file again."""
        self._interp = None

    def timed(self, feeds: Sequence[np.ndarray]) -> Any:
        """An allocated, fed interpreter's ``invoke`` (latency without loading the file each call)."""
        from converter.frameworks import silenced_stderr

        with silenced_stderr():
            _, invoke = self._prepared(feeds)
        return invoke

    def _prepared(self, feeds: Sequence[np.ndarray]) -> tuple[Any, Any]:
        from converter.frameworks import tflite_interpreter

        if self._interp is None:
            self._interp = tflite_interpreter(str(self.path), num_threads=2)
        interp = self._interp
        details = interp.get_input_details()
        for d, f in zip(details, feeds):
            if tuple(d["shape"]) != tuple(f.shape):
                interp.resize_tensor_input(d["index"], list(f.shape), strict=False)
        interp.allocate_tensors()
        interp.reset_all_variables()
        for d, f in zip(interp.get_input_details(), feeds):
            interp.set_tensor(d["index"], np.ascontiguousarray(quantize(np.asarray(f), d)))
        return interp, interp.invoke


def io_quantization(detail: dict[str, Any]) -> tuple[float, int] | None:
    """(scale, zero point) of an integer-quantized TFLite input/output, else None."""
    scale, zero = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return float(scale), int(zero)
    return None


def quantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """A float feed as the tensor's dtype: through scale/zero point for a quantized integer input."""
    q = io_quantization(detail)
    dtype = np.dtype(detail["dtype"])
    if q is None or array.dtype.kind not in "f":
        return array.astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(array / q[0] + q[1]), info.min, info.max).astype(dtype)


def dequantize(array: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    q = io_quantization(detail)
    if q is None:
        return array
    return ((array.astype(np.float32) - q[1]) * q[0]).astype(np.float32)
