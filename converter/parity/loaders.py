"""Open any model crossport can verify — a path or an in-memory model — as a runner plus its signature.

Loading is safe by default: PyTorch files go through ``converter.formats`` (``weights_only=True``), Keras files
load with ``safe_mode=True`` (a Lambda layer needs ``trust_code``). Layouts are *not* decided here: a runner starts
with ``Layout.NONE`` everywhere and ``converter.parity.layouts`` sets them from the manifest or the flags.
"""
from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from converter.errors import ModelFileError, first_line
from converter.layout import Layout
from converter.parity.runners import Runner

TORCH, ONNX, KERAS, SAVED_MODEL, TFLITE = "torch", "onnx", "keras", "saved_model", "tflite"
CHANNELS_FIRST_KINDS = (TORCH, ONNX)


@dataclass(frozen=True)
class LoadOptions:
    """How to open a model: architecture for a state_dict, and the trust opt-ins."""

    model_class: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    trust_code: bool = False
    weights_key: str | None = None  # where a checkpoint dict keeps the weights (dotted)


@dataclass(frozen=True)
class LoadedModel:
    """A runner and what the model says about its tensors (``None`` in a shape = dynamic)."""

    source: str
    kind: str
    format: str
    runner: Runner
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int | None, ...] | None, ...]
    input_dtypes: tuple[str, ...]
    output_names: tuple[str, ...]
    handle: Any = None  # nn.Module / ExportedProgram / keras.Model / onnx path, for per-layer probes
    notes: tuple[str, ...] = ()
    feed_order: tuple[int, ...] = ()  # for each own input, its index among the reference's inputs (matched by name)

    def own_order(self, feeds: Sequence[Any]) -> list[Any]:
        """Feeds given in the reference's input order, in this model's own order."""
        return [feeds[i] for i in self.feed_order] if self.feed_order else list(feeds)

    @property
    def has_signature(self) -> bool:
        return bool(self.input_shapes) and all(s is not None for s in self.input_shapes)


def load_model(model: Any, options: LoadOptions = LoadOptions()) -> LoadedModel:
    """A path (any format ``converter.formats.sniff`` knows, or ``module:factory``) or an nn.Module / keras.Model."""
    if isinstance(model, (str, Path)):
        return _load_path(str(model), options)
    if _is_torch_module(model):
        return _torch(repr_name(model), "nn.Module", model, None, (), (), (), None)
    if _is_keras_model(model):
        return _keras_loaded(repr_name(model), "keras.Model", model)
    raise ModelFileError(f"cannot verify a {type(model).__name__}: pass a path, a torch.nn.Module or a keras.Model")


def repr_name(model: Any) -> str:
    return f"<{type(model).__name__}>"


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_keras_model(obj: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(obj, keras.Model)


def _load_path(source: str, options: LoadOptions) -> LoadedModel:
    from converter.formats import Format, load_torch_source, sniff
    from converter.model_checks import keras_file_nonfinite, raise_if_nonfinite, torch_nonfinite

    fmt = sniff(source)
    if fmt in (Format.EXPORTED_PROGRAM, Format.TORCHSCRIPT, Format.TORCH_CHECKPOINT, Format.SAFETENSORS,
               Format.FACTORY):
        src = load_torch_source(source, fmt, options.model_class, options.model_kwargs, options.trust_pickle,
                                options.weights_key)
        raise_if_nonfinite(source, torch_nonfinite(src.module), _NONFINITE_HINT)
        shapes: tuple = ()
        if src.example_shapes:
            shapes = tuple((None, *s[1:]) if src.dynamic_batch and s else s for s in src.example_shapes)
        return _torch(source, fmt.value, src.module, src.exported_program, src.input_names, shapes,
                      src.example_dtypes, src.notes)
    if fmt == Format.ONNX:
        return _onnx(source)
    if fmt in (Format.KERAS, Format.H5):
        raise_if_nonfinite(source, keras_file_nonfinite(source), _NONFINITE_HINT)
        from converter.adapters.keras_load import load_keras

        return _keras_loaded(source, fmt.value, load_keras(source, options.trust_code))
    if fmt == Format.SAVED_MODEL:
        return _saved_model(source)
    if fmt == Format.TFLITE:
        return _tflite(source)
    raise ModelFileError(f"{source}: {fmt.value} cannot be verified")


# Comparing a model whose weights are NaN compares NaN with NaN: it would "pass" and prove nothing.
_NONFINITE_HINT = " (a model with non-finite weights has nothing to compare)"


def _torch(source: str, fmt: str, module: Any, ep: Any, names: tuple[str, ...], shapes: tuple,
           dtypes: tuple[str, ...], notes: tuple[str, ...] | None) -> LoadedModel:
    from converter.parity.runners import TorchRunner

    if not names:
        names = _forward_names(module)
    if shapes and not dtypes:
        dtypes = ("float32",) * len(shapes)
    runner = TorchRunner(module, (Layout.NONE,) * max(len(names), 1), (), name=f"pytorch ({fmt})")
    return LoadedModel(source, TORCH, fmt, runner, tuple(names), tuple(shapes), tuple(dtypes), (),
                       handle=ep if ep is not None else module, notes=tuple(notes or ()))


def _forward_names(module: Any) -> tuple[str, ...]:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return ()
    return tuple(p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def _onnx(source: str) -> LoadedModel:
    import onnxruntime as ort

    from converter.parity.runners import OnnxRunner

    _check_onnx_file(source)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ModelFileError(f"{source}: onnxruntime cannot load it ({first_line(err)})") from err
    ins = session.get_inputs()
    shapes = tuple(tuple(d if isinstance(d, int) and d > 0 else None for d in i.shape) for i in ins)
    dtypes = tuple(_ORT_TYPES.get(i.type, "float32") for i in ins)
    runner = OnnxRunner(Path(source), (Layout.NONE,) * len(ins), (), _session=session)
    return LoadedModel(source, ONNX, "onnx", runner, tuple(i.name for i in ins), shapes, dtypes,
                       tuple(o.name for o in session.get_outputs()), handle=Path(source))


def _check_onnx_file(source: str) -> None:
    """Name a custom-domain op or NaN weights before onnxruntime fails on them with its own, longer message."""
    import onnx

    from converter.model_checks import check_onnx_ops, onnx_nonfinite, raise_if_nonfinite

    try:
        model = onnx.load(source)
    except Exception as err:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise ModelFileError(f"{source}: not a readable ONNX model ({first_line(err)})") from err
    check_onnx_ops(model, source)
    raise_if_nonfinite(source, onnx_nonfinite(model), _NONFINITE_HINT)


_ORT_TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(float16)": "float16", "tensor(uint8)": "uint8"}


def _keras_loaded(source: str, fmt: str, model: Any) -> LoadedModel:
    from converter.parity.runners import KerasRunner

    inputs = list(getattr(model, "inputs", None) or [])
    names = tuple(str(getattr(t, "name", f"input{i}")).split(":")[0] for i, t in enumerate(inputs))
    shapes = tuple(tuple(d if isinstance(d, int) else None for d in t.shape) for t in inputs)
    dtypes = tuple(str(getattr(t, "dtype", "float32")).replace("tf.", "") for t in inputs)
    try:
        outs = tuple(str(n) for n in model.output_names)
    except Exception:  # noqa: BLE001 - subclassed models have no output names
        outs = ()
    runner = KerasRunner(model, (Layout.NONE,) * len(inputs), (), name=f"keras ({fmt})")
    return LoadedModel(source, KERAS, fmt, runner, names, shapes, dtypes, outs, handle=model)


def _saved_model(source: str) -> LoadedModel:
    from converter.frameworks import silenced_stderr, tensorflow
    from converter.parity.runners import SavedModelRunner, _output_key

    tf = tensorflow()
    try:
        with silenced_stderr():
            loaded = tf.saved_model.load(source)
        fn = loaded.signatures["serving_default"]
    except KeyError as err:
        raise ModelFileError(f"{source}: SavedModel has no 'serving_default' signature") from err
    except Exception as err:  # noqa: BLE001
        raise ModelFileError(f"{source}: not a readable SavedModel ({first_line(err)})") from err
    spec = fn.structured_input_signature[1]
    names = tuple(spec)
    shapes = tuple(tuple(d if isinstance(d, int) else None for d in spec[n].shape.as_list()) for n in names)
    dtypes = tuple(spec[n].dtype.name for n in names)
    out_keys = tuple(sorted(fn.structured_outputs, key=_output_key))
    runner = SavedModelRunner(Path(source), (Layout.NONE,) * len(names), (), output_keys=out_keys, _fn=fn)
    runner._keep = loaded  # keep the trackable alive while the signature is used
    return LoadedModel(source, SAVED_MODEL, "saved_model", runner, names, shapes, dtypes, out_keys)


def _tflite(source: str) -> LoadedModel:
    from converter.frameworks import silenced_stderr, tflite_interpreter
    from converter.parity.runners import TFLiteRunner, io_quantization

    try:
        with silenced_stderr():
            interp = tflite_interpreter(source)
            details = interp.get_input_details()
            outs = interp.get_output_details()
    except Exception as err:  # noqa: BLE001
        raise ModelFileError(f"{source}: not a readable TFLite file ({first_line(err)})") from err
    shapes = tuple(tuple(None if s < 0 else int(d) for d, s in zip(x["shape"], x.get("shape_signature", x["shape"])))
                   for x in details)
    names = tuple(_tflite_name(x["name"]) for x in details)
    # A full-integer file's int8 inputs take float data through their scale/zero point (TFLiteRunner quantizes).
    dtypes = tuple("float32" if io_quantization(x) else str(x["dtype"].__name__) for x in details)
    runner = TFLiteRunner(Path(source), (Layout.NONE,) * len(details), ())
    return LoadedModel(source, TFLITE, "tflite", runner, names, shapes, dtypes,
                       tuple(_tflite_name(o["name"]) for o in outs))


def _tflite_name(name: str) -> str:
    """``serving_default_x:0`` -> ``x``: the name the model was built with."""
    return name.removeprefix("serving_default_").split(":")[0]

