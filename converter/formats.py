"""What a path is, and how to load each PyTorch source format safely.

Sniffing looks at content as well as the suffix (a TorchScript archive and a state_dict may both be ``.pt``).
Loading never unpickles arbitrary objects unless the caller passed ``trust_pickle=True``: plain ``torch.load``
runs with ``weights_only=True`` and safetensors has no code at all; a ``.pt2`` ExportedProgram goes through
``converter.adapters.pt2_load``. Everything lands on the CPU, whatever device the file was saved from.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import sys
import zipfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from converter.errors import InputPathError, ModelClassError, ModelFileError, UnsafeLoadError, first_line


class Format(str, Enum):
    EXPORTED_PROGRAM = "pt2"
    TORCHSCRIPT = "torchscript"
    TORCH_CHECKPOINT = "torch-checkpoint"  # state_dict or pickled module; decided at load time
    SAFETENSORS = "safetensors"  # a state_dict: one .safetensors file, or a sharded checkpoint's .index.json
    FACTORY = "factory"
    ONNX = "onnx"
    KERAS = "keras"
    H5 = "h5"
    SAVED_MODEL = "saved_model"
    TFLITE = "tflite"


TARGET_SUFFIXES = {".keras": "keras", ".onnx": "onnx", ".tflite": "tflite", ".pt2": "pt2", ".pt": "torchscript",
                   ".pte": "executorch"}
# aoti (an AOTInductor package) is also a .pt2 file, PyTorch's own convention: it is chosen with --to aoti only.
TARGETS = ("keras", "saved_model", "tflite", "onnx", "pt2", "torch", "torchscript", "aoti", "executorch")


def sniff(source: str) -> Format:
    """Classify a source path (or a ``module:callable`` factory spec)."""
    path = Path(source)
    if not path.exists():
        if ":" in source:
            return Format.FACTORY
        raise InputPathError(f"{source}: no such file or directory")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return Format.SAVED_MODEL
        raise InputPathError(f"{source}: is a directory but not a TensorFlow SavedModel (no saved_model.pb)")
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise ModelFileError(f"{source}: file is empty")
    if path.name.endswith((".safetensors.index.json", ".bin.index.json", ".pt.index.json", ".pth.index.json")):
        return Format.SAFETENSORS if ".safetensors." in path.name else Format.TORCH_CHECKPOINT
    _check_zip_container(path, suffix)
    if suffix == ".onnx":
        return Format.ONNX
    if suffix == ".keras":
        return Format.KERAS
    if suffix in (".h5", ".hdf5"):
        return Format.H5
    if suffix == ".tflite":
        return Format.TFLITE
    if suffix == ".pt2":
        return Format.EXPORTED_PROGRAM
    if suffix == ".safetensors":
        return Format.SAFETENSORS
    if suffix in (".pt", ".pth", ".bin", ".ckpt", ".torchscript", ".jit"):
        if zipfile.is_zipfile(path):
            try:
                names = zipfile.ZipFile(path).namelist()
            except zipfile.BadZipFile as err:
                raise ModelFileError(f"{source}: corrupt zip archive ({err})") from err
            if any("/code/" in n or n.endswith("constants.pkl") for n in names):
                return Format.TORCHSCRIPT
            if any(n.endswith("serialized_exported_program.json") or "/models/" in n and n.endswith(".json")
                   for n in names):
                return Format.EXPORTED_PROGRAM
        return Format.TORCH_CHECKPOINT
    raise ModelFileError(
        f"{source}: unknown model suffix {suffix!r}; expected .pt2, .pt/.pth/.bin/.ckpt, .safetensors (or a "
        "sharded checkpoint's .index.json), .onnx, .keras, .h5, .tflite or a SavedModel directory"
    )


_ZIP_SUFFIXES = {".pt2": "an ExportedProgram (.pt2)", ".keras": "a Keras 3 model (.keras)"}
_TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".torchscript", ".jit")


def _check_zip_container(path: Path, suffix: str) -> None:
    """Name a truncated or foreign file by its container before a loader does it with a misleading message
    (Keras says "File not found" for a .keras that is not a zip; torch says "Invalid argument")."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError as err:
        raise InputPathError(f"{path}: cannot read ({err.strerror or err})") from err
    looks_zip = head == b"PK\x03\x04"
    if suffix in _ZIP_SUFFIXES and not looks_zip:
        raise ModelFileError(f"{path}: not {_ZIP_SUFFIXES[suffix]}: such files are zip archives and this one is "
                             "not; check the file or its suffix")
    if (suffix in _ZIP_SUFFIXES or suffix in _TORCH_SUFFIXES) and looks_zip and not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: truncated or corrupt (a zip archive without its central directory); "
                             "save or download it again")


# ---- model class / factory specs -------------------------------------------------------------------------


def resolve_callable(spec: str) -> Any:
    """``pkg.module:Name`` or ``path/to/file.py:Name`` -> the object (importing user code is the user's opt-in)."""
    if ":" not in spec:
        raise ModelClassError(f"{spec!r}: expected 'package.module:Name' or 'path/to/file.py:Name'")
    mod_part, _, attr = spec.rpartition(":")
    try:
        if mod_part.endswith(".py"):
            file = Path(mod_part)
            if not file.is_file():
                raise ModelClassError(f"{mod_part}: no such Python file")
            name = f"crossport_user_{abs(hash(str(file.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, file)
            if module_spec is None or module_spec.loader is None:
                raise ModelClassError(f"{mod_part}: cannot be imported as a module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            sys.path.insert(0, str(file.parent.resolve()))
            try:
                module_spec.loader.exec_module(module)
            finally:
                sys.path.pop(0)
        else:
            # Like `python -m`, resolve packages from the current directory first.
            cwd = str(Path.cwd())
            if cwd not in sys.path:
                sys.path.insert(0, cwd)
            module = importlib.import_module(mod_part)
    except ModelClassError:
        raise
    except SyntaxError as err:
        raise ModelClassError(f"{mod_part}: does not parse (line {err.lineno}: {err.msg})") from err
    except Exception as err:  # noqa: BLE001 - user code may raise anything on import
        raise ModelClassError(f"{mod_part}: import failed: {type(err).__name__}: {err}") from err
    obj = getattr(module, attr, None)
    if obj is None:
        raise ModelClassError(f"{spec}: module has no attribute {attr!r}")
    return obj


def build_module(spec: str, kwargs: dict[str, Any]) -> Any:
    """Instantiate a model class or call a factory, and check it really is an ``nn.Module``."""
    import torch

    from converter.factories import build_library_model, is_library_spec

    if is_library_spec(spec):
        return build_library_model(spec, kwargs)
    obj = resolve_callable(spec)
    if not callable(obj):
        raise ModelClassError(f"{spec}: is not a class or function")
    try:
        module = obj(**kwargs)
    except TypeError as err:
        raise ModelClassError(f"{spec}: cannot be built with --model-kwargs {json.dumps(kwargs)}: {err}") from err
    except Exception as err:  # noqa: BLE001
        raise ModelClassError(f"{spec}: building it raised {type(err).__name__}: {err}") from err
    if not isinstance(module, torch.nn.Module):
        kind = "class" if inspect.isclass(obj) else "factory"
        raise ModelClassError(f"{spec}: this {kind} returned {type(module).__name__}, not a torch.nn.Module")
    return module


# ---- loading PyTorch sources -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TorchSource:
    """A loaded PyTorch model and what the file told us about its inputs."""

    module: Any  # nn.Module, ScriptModule or ExportedProgram.module()
    format: Format
    exported_program: Any = None
    example_shapes: tuple[tuple[int, ...], ...] = ()
    example_dtypes: tuple[str, ...] = ()
    input_names: tuple[str, ...] = ()
    dynamic_batch: bool | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    batch_min: int = 1  # a dynamic-batch ExportedProgram's lower bound on its batch (Dim("batch", min=2): 2)


def _check_zip(path: Path, kind: str) -> None:
    """torch's own reader logs a long traceback for a broken archive; say it in one line instead."""
    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise ModelFileError(f"{path}: not a readable {kind} (not a complete zip archive: {err})") from err


def _weights_only_load(path: Path) -> Any:
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        text = str(err)
        # "Unsupported global" is a pickle naming a class or function to import and call: code. Anything else the
        # weights-only unpickler rejects ("Unsupported operand 139", bad load keys) is bytes that are not a pickle.
        lowered = text.lower()
        if "unsupported global" in lowered or "unsupported class" in lowered or "global " in lowered:
            raise UnsafeLoadError(
                f"{path}: holds pickled Python objects (e.g. a whole nn.Module saved with torch.save(model)), which "
                "torch.load(weights_only=True) refuses: loading them would run code from the file. Save a "
                "state_dict and pass --model-class, or pass --trust-pickle if you trust this file"
            ) from err
        detail = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith("Unsupported")),
                      text.splitlines()[0] if text else "")
        raise ModelFileError(f"{path}: not a readable PyTorch file (corrupt or not a checkpoint: {detail[:120]})") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise ModelFileError(f"{path}: not a readable PyTorch file ({first_line(err)})") from err


def read_checkpoint(path: Path, fmt: Format, trust_pickle: bool = False) -> Any:
    """The object a checkpoint file holds, on the CPU: safetensors (no pickle at all), a sharded checkpoint's
    index, or ``torch.load`` -- weights-only unless the user vouched for the file with ``--trust-pickle``."""
    import torch

    from converter.state_dicts import is_shard_index, read_safetensors, read_sharded

    def read_pickle(file: Path) -> Any:
        if not trust_pickle:
            return _weights_only_load(file)
        try:
            return torch.load(str(file), map_location="cpu", weights_only=False)
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"{file}: not a readable PyTorch file ({first_line(err)})") from err

    if is_shard_index(path):
        return read_sharded(path, read_safetensors if fmt == Format.SAFETENSORS else read_pickle)
    if fmt == Format.SAFETENSORS:
        return read_safetensors(path)
    return read_pickle(path)


def _pickled_module(obj: Any, weights_key: str | None) -> tuple[str, Any] | None:
    """A whole module saved inside a dict checkpoint (``{"model": model, "epoch": ...}``, as YOLOv5 does)."""
    import torch

    if not isinstance(obj, dict):
        return None
    from converter.state_dicts import WEIGHT_KEYS

    for key in ([weights_key] if weights_key else list(WEIGHT_KEYS)):
        if isinstance(obj.get(key), torch.nn.Module):
            return key, obj[key]
    return None


def ep_batch_min(ep: Any) -> int:
    """The lower bound of the first input's symbolic batch in ``ep.range_constraints`` (1 when the batch is fixed
    or the bound is unknown). A smaller batch is outside what the program was exported for: torch 2.14's
    ``ep.module()`` runs it unchecked, but nothing says the graph computes the model there."""
    import torch

    for spec in ep.graph_signature.input_specs:
        if spec.kind != torch.export.graph_signature.InputKind.USER_INPUT:
            continue
        node = next((n for n in ep.graph.nodes if n.name == spec.arg.name), None)
        val = node.meta.get("val") if node is not None else None
        if val is None or not getattr(val, "shape", None) or isinstance(val.shape[0], int):
            return 1
        bound = ep.range_constraints.get(val.shape[0].node.expr)
        try:
            return max(1, int(bound.lower)) if bound is not None else 1
        except (TypeError, ValueError):  # a symbolic lower bound
            return 1
    return 1


def _ep_signature(ep: Any) -> tuple[tuple[tuple[int, ...], ...], tuple[str, ...], tuple[str, ...], bool]:
    """Input shapes/dtypes/names recorded in an ExportedProgram; symbolic dims become 2 (dynamic batch)."""
    import torch

    shapes, dtypes, names = [], [], []
    dynamic = False
    for spec in ep.graph_signature.input_specs:
        if spec.kind != torch.export.graph_signature.InputKind.USER_INPUT:
            continue
        node = next((n for n in ep.graph.nodes if n.name == spec.arg.name), None)
        val = node.meta.get("val") if node is not None else None
        if val is None or not hasattr(val, "shape"):
            continue
        dims = []
        for i, d in enumerate(val.shape):
            if isinstance(d, int):
                dims.append(d)
            else:
                dynamic = dynamic or i == 0
                hint = 2
                try:
                    hint = int(d.node.hint) if d.node.hint is not None else 2
                except Exception:  # noqa: BLE001
                    pass
                dims.append(hint)
        shapes.append(tuple(dims))
        dtypes.append(str(val.dtype).replace("torch.", ""))
        names.append(spec.arg.name)
    return tuple(shapes), tuple(dtypes), tuple(names), dynamic


def load_torch_source(
    source: str,
    fmt: Format,
    model_class: str | None = None,
    model_kwargs: dict[str, Any] | None = None,
    trust_pickle: bool = False,
    weights_key: str | None = None,
) -> TorchSource:
    """Load any PyTorch source format into an eval-mode module on the CPU."""
    import torch

    path = Path(source)
    kwargs = model_kwargs or {}
    if fmt == Format.FACTORY:
        module = build_module(source, kwargs)
        if model_class:
            raise ModelClassError("a factory source cannot be combined with --model-class")
        return TorchSource(module.eval(), fmt)
    if fmt == Format.EXPORTED_PROGRAM:
        _check_zip(path, "ExportedProgram")
        from converter.adapters.pt2_load import load_exported_program

        ep, notes = load_exported_program(path)
        shapes, dtypes, names, dynamic = _ep_signature(ep)
        return TorchSource(ep.module(), fmt, exported_program=ep, example_shapes=shapes, example_dtypes=dtypes,
                           input_names=names, dynamic_batch=dynamic, notes=notes, batch_min=ep_batch_min(ep))
    if fmt == Format.TORCHSCRIPT:
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"{path}: not a readable TorchScript archive ({first_line(err)})") from err
        return TorchSource(module.eval(), fmt)
    if fmt in (Format.TORCH_CHECKPOINT, Format.SAFETENSORS):
        obj = read_checkpoint(path, fmt, trust_pickle)
        if isinstance(obj, torch.nn.Module):
            return TorchSource(obj.eval(), fmt, notes=("loaded a pickled nn.Module (--trust-pickle)",))
        pickled = _pickled_module(obj, weights_key) if trust_pickle else None
        if pickled is not None:
            return TorchSource(pickled[1].eval(), fmt, notes=(f"loaded the pickled nn.Module under {pickled[0]!r} "
                                                              "(--trust-pickle)",))
        from converter.state_dicts import find_state_dict, load_into

        found = find_state_dict(obj, path, weights_key)
        if not model_class:
            raise ModelClassError(
                f"{path}: holds weights only ({found.describe()}); pass --model-class package.module:Class "
                "(or path/to/file.py:Class, timm:NAME, transformers:Class) so crossport knows the architecture"
            )
        module = build_module(model_class, kwargs)
        notes = load_into(module, found, path, model_class)
        return TorchSource(module.eval(), fmt, notes=notes)
    raise ModelFileError(f"{path}: {fmt.value} is not a PyTorch format")
