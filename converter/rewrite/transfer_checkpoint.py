"""A trained PyTorch state_dict -> a trained Keras 3 model, through rewritten Keras code, verified before saving."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converter.errors import InputPathError, ModelFileError, OutputError
from converter.weights.errors import WeightMappingError


@dataclass(frozen=True)
class TransferJob:
    checkpoint: Path
    keras_source: Path
    class_name: str
    torch_source: Path | None
    torch_class: str
    output: Path
    input_shapes: tuple[tuple[int, ...], ...]
    init_kwargs_json: str | None = None
    layout: str | None = None
    force: bool = False
    atol: float = 1e-4
    rtol: float = 1e-4
    seed: int = 0
    unverified: bool = False
    trust_pickle: bool = False  # load a checkpoint holding pickled objects (runs code from the file)


def parse_target(text: str) -> tuple[Path, str | None]:
    """``file.py:Class`` -> (path, class); the class part is optional."""
    path, sep, cls = text.rpartition(":")
    if sep and path.endswith(".py") and cls.isidentifier():
        return Path(path), cls
    return Path(text), None


def load_state_dict(path: Path, trust_pickle: bool = False) -> dict[str, Any]:
    """The checkpoint's weights, found and read the way ``convert`` reads them (``converter.state_dicts``):
    tutorial/Lightning/timm dicts, DataParallel and torch.compile prefixes, safetensors; never runs code unless
    ``trust_pickle``."""
    from converter.formats import Format, read_checkpoint
    from converter.state_dicts import find_state_dict, is_shard_index, strip_wrapper_prefixes

    if not path.is_file():
        raise InputPathError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path}: empty file, not a checkpoint")
    safetensors = path.suffix == ".safetensors" or is_shard_index(path) and ".safetensors." in path.name
    obj = read_checkpoint(path, Format.SAFETENSORS if safetensors else Format.TORCH_CHECKPOINT, trust_pickle)
    return strip_wrapper_prefixes(find_state_dict(obj, path).state)


def detect_layout(keras_code: str) -> str:
    return "channels_first" if 'data_format="channels_first"' in keras_code else "channels_last"


def run_transfer(job: TransferJob) -> tuple[Any, Path]:
    """Returns (VerifyReport, output path). Writes the .keras file only when parity holds."""
    from converter.frameworks import quiet_frameworks

    quiet_frameworks()
    from converter.frameworks import tensorflow

    tensorflow()  # imported with fd 2 silenced: TF's C++ registration noise never reaches the user
    import torch

    from converter.rewrite import RewriteOptions, rewrite_source
    from converter.rewrite.loading import build, import_file, parse_init_kwargs
    from converter.rewrite.verify import VerifyOptions, compare_models

    if job.output.exists() and not job.force:
        raise OutputError(f"{job.output}: exists; pass --force to overwrite")
    if job.output.suffix != ".keras":
        raise OutputError(f"{job.output}: the output must end in .keras")
    keras_code = job.keras_source.read_text(encoding="utf-8") if job.keras_source.is_file() else None
    if keras_code is None:
        raise InputPathError(f"{job.keras_source}: no such file")
    layout = job.layout or detect_layout(keras_code)
    if job.torch_source is None:
        return _transfer_unverified(job, layout)
    torch_source: Path = job.torch_source
    if not torch_source.is_file():
        raise InputPathError(f"--source {torch_source}: no such file")
    analysis = rewrite_source(torch_source.read_text(encoding="utf-8"), RewriteOptions(layout=layout),
                              filename=str(torch_source))
    kwargs = parse_init_kwargs(job.init_kwargs_json)
    state = load_state_dict(job.checkpoint, job.trust_pickle)
    torch.manual_seed(job.seed)
    original = build(import_file(torch_source), job.torch_class, kwargs, str(torch_source))
    try:
        original.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise WeightMappingError(f"{job.checkpoint} does not fit {job.torch_class}: {' '.join(lines[1:3])}") from None
    rewritten = build(import_file(job.keras_source), job.class_name, kwargs, str(job.keras_source))
    report = compare_models(original, rewritten, class_name=job.class_name, layout=layout,
                            spatial=job.torch_class in analysis.spatial_classes,
                            options=VerifyOptions(job.input_shapes, atol=job.atol, rtol=job.rtol,
                                                  seed=job.seed))
    if report.passed:
        _save(rewritten, job.output)
    return report, job.output


_IMAGE_MARKERS = ("keras.layers.Conv", "Pooling", "keras.ops.max_pool", "keras.ops.average_pool", "UpSampling",
                  "ZeroPadding", "Cropping", "GroupNormalization")


def _transfer_unverified(job: TransferJob, layout: str) -> tuple[None, Path]:
    """No original class: map the checkpoint by the Keras model's attribute paths; nothing can be compared."""
    import numpy as np

    from converter.errors import CrossportError
    from converter.rewrite.loading import build, import_file, parse_init_kwargs
    from converter.weights.from_state_dict import keras_flatten_inputs, load_state_dict_into_keras

    if not job.unverified:
        raise CrossportError("without --source there is no reference model to verify against; pass --unverified to "
                             "write the .keras file anyway (the report says so)")
    state = load_state_dict(job.checkpoint, job.trust_pickle)
    model = build(import_file(job.keras_source), job.class_name, parse_init_kwargs(job.init_kwargs_json),
                  str(job.keras_source))
    rng = np.random.default_rng(job.seed)
    shapes = job.input_shapes
    keras_code = job.keras_source.read_text(encoding="utf-8")
    # --input-shape is torch's (N, C, ...); it is an image input (moved to NHWC) when the code has image layers.
    image = layout == "channels_last" and any(t in keras_code for t in _IMAGE_MARKERS)
    inputs = []
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        inputs.append(np.moveaxis(x, 1, -1) if image and x.ndim >= 3 else x)
    model(*inputs, training=False)
    flatten = keras_flatten_inputs(model, inputs) if layout == "channels_last" else {}
    load_state_dict_into_keras(state, model, layout, flatten)
    _save(model, job.output)
    return None, job.output


def _save(model: Any, output: Path) -> None:
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=".keras", dir=output.parent)
        os.close(fd)
        os.unlink(tmp)
        model.save(tmp)
        os.replace(tmp, output)
    except OSError as err:
        raise OutputError(f"{output}: cannot write: {err.strerror or err}") from None
