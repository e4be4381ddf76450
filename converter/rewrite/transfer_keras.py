"""A trained Keras model file -> a trained, trainable PyTorch module, through the ``--to torch`` rewritten code,
verified before anything is written (state_dict ``.pt`` or an exported program ``.pt2``).

Loading is the one safe loader, ``keras.models.load_model(safe_mode=True)`` unless the user passed --trust-code: a
``.keras`` file with Lambda layers carries code, and loading a model is not a licence to run it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converter.errors import InputPathError, OutputError

OUTPUT_SUFFIXES = (".pt", ".pt2")


@dataclass(frozen=True)
class KerasTransferJob:
    model_file: Path
    torch_source: Path
    entry: str
    output: Path
    input_shapes: tuple[tuple[int, ...], ...]
    keras_source: Path | None = None
    init_kwargs_json: str | None = None
    trust_code: bool = False
    force: bool = False
    atol: float = 1e-4
    rtol: float = 1e-4
    seed: int = 0


def load_keras_model(path: Path, custom_source: Path | None, trust_code: bool) -> Any:
    """The one safe loader (``converter.adapters.keras_load``); classes defined in ``custom_source`` are made known
    to Keras (importing that source is the user's opt-in, as with --source everywhere)."""
    import keras

    from converter.adapters.keras_load import load_keras
    from converter.rewrite.loading import import_file

    if not path.is_file():
        raise InputPathError(f"{path}: no such file")
    custom: dict[str, Any] = {}
    if custom_source is not None:
        module = import_file(custom_source)
        custom = {n: v for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, keras.layers.Layer)}
    return load_keras(path, trust_code, custom_objects=custom)


def is_spatial(model: Any) -> bool:
    """Conv/pool layers mean channels-last image tensors (NCHW on the torch side)."""
    from keras import layers as L

    kinds = (L.Conv1D, L.Conv2D, L.Conv3D, L.DepthwiseConv2D, L.SeparableConv2D, L.MaxPooling2D, L.MaxPooling1D,
             L.AveragePooling2D, L.AveragePooling1D, L.GlobalAveragePooling2D, L.GlobalMaxPooling2D,
             L.UpSampling2D, L.ZeroPadding2D, L.Conv2DTranspose)
    return any(isinstance(layer, kinds) for layer in model._flatten_layers())


def run_keras_transfer(job: KerasTransferJob) -> tuple[Any, Path]:
    """Returns (VerifyReport, output path); writes the output only when the outputs match."""
    from converter.frameworks import quiet_frameworks

    quiet_frameworks()
    from converter.frameworks import keras as _keras

    _keras()  # TensorFlow imported with fd 2 silenced: its C++ start-up lines (cuInit, ...) never reach the user
    import torch

    from converter.rewrite.keras_probe import build_entry
    from converter.rewrite.loading import import_file, parse_init_kwargs
    from converter.rewrite.verify import VerifyOptions
    from converter.rewrite.verify_torch import embedding_size, compare_keras_torch

    if job.output.exists() and not job.force:
        raise OutputError(f"{job.output}: exists; pass --force to overwrite")
    if job.output.suffix not in OUTPUT_SUFFIXES:
        raise OutputError(f"{job.output}: the output must end in .pt (state_dict) or .pt2 (torch.export program)")
    original = load_keras_model(job.model_file, job.keras_source, job.trust_code)
    torch.manual_seed(job.seed)
    module = build_entry(import_file(job.torch_source), job.entry, parse_init_kwargs(job.init_kwargs_json),
                         str(job.torch_source))
    options = VerifyOptions(job.input_shapes, atol=job.atol, rtol=job.rtol, seed=job.seed)
    report = compare_keras_torch(original, module, name=job.entry, spatial=is_spatial(original), options=options)
    if report.passed:
        integer = embedding_size(original) is not None
        _save(module, job.output, options.input_shapes, is_spatial(original), integer)
    return report, job.output


def _save(module: Any, output: Path, shapes: tuple[tuple[int, ...], ...], spatial: bool, integer: bool) -> None:
    import torch

    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=output.suffix, dir=output.parent)
        os.close(fd)
        if output.suffix == ".pt2":
            dtype = torch.long if integer else torch.float32
            example = tuple(torch.zeros(_torch_shape(s, spatial), dtype=dtype) for s in shapes)
            torch.export.save(torch.export.export(module.eval(), example), tmp)
        else:
            torch.save(module.state_dict(), tmp)
        os.replace(tmp, output)
    except OSError as err:
        raise OutputError(f"{output}: cannot write: {err.strerror or err}") from None


def _torch_shape(shape: tuple[int, ...], spatial: bool) -> tuple[int, ...]:
    return (shape[0], shape[-1], *shape[1:-1]) if spatial and len(shape) >= 3 else shape
