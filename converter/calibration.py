"""Calibration samples for integer-quantized TFLite (``--calibration data.npz``).

The file holds one array per model input -- by input name, else in order -- in the *source's* layout (NCHW images
for a PyTorch source), the first axis being the samples. The TFLite converter calibrates the model crossport built,
whose image inputs are NHWC: ``representative_feeds`` moves each sample through the layout contract exactly as the
verification inputs are moved. Without a file the seeded verification inputs calibrate, with a warning in the
report: random inputs only roughly match the activation ranges real data produces.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from converter.errors import InputPathError, ModelFileError, ShapeError, first_line
from converter.layout import Layout, to_layout
from converter.parity.inputs import InputSpec, make_input_sets

# The converter runs the model once per sample; a few hundred samples are what its documentation recommends.
MAX_SAMPLES = 256
SEEDED_WARNING = ("calibrated on the seeded sample inputs (random data): pass --calibration data.npz with real "
                  "inputs, which calibrates the int8 ranges better")


@dataclass(frozen=True)
class Calibration:
    """Samples per input in the source's layout (first axis = samples), and where they came from."""

    arrays: tuple[np.ndarray, ...]
    origin: str  # the file, or "seeded sample inputs"

    @property
    def samples(self) -> int:
        return int(self.arrays[0].shape[0]) if self.arrays else 0

    def describe(self) -> str:
        return f"{self.samples} samples from {self.origin}"


def check_file(path: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Cheap checks before any model is loaded: the file exists, is an .npz, holds numeric arrays with samples.
    Returns each array's shape and dtype."""
    p = Path(path)
    if not p.exists():
        raise InputPathError(f"--calibration {path}: no such file")
    if p.is_dir():
        raise InputPathError(f"--calibration {path}: is a directory; pass a .npz file")
    try:
        with np.load(p, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            info = {k: (tuple(data[k].shape), data[k].dtype) for k in data.files}
    except Exception as err:  # noqa: BLE001 - np.load raises several kinds for a bad file
        raise ModelFileError(f"--calibration {path}: not a readable .npz ({first_line(err)})") from err
    if not info:
        raise ShapeError(f"--calibration {path}: holds no arrays; save one array per model input "
                         "(np.savez(path, x=samples))")
    for key, (shape, dtype) in info.items():
        if dtype.kind not in "biuf":
            raise ShapeError(f"--calibration {path}: array {key!r} has dtype {dtype}; calibration samples must be "
                             "float, int or bool arrays")
        if not shape or shape[0] == 0:
            raise ShapeError(f"--calibration {path}: array {key!r} has shape {list(shape)}: no samples (the first "
                             "axis counts the samples)")
    return info


def load(path: str, names: Sequence[str], shapes: Sequence[tuple[int, ...]], dtypes: Sequence[str]) -> Calibration:
    """The file's arrays matched to the model's inputs (by name, else by order) and checked against their shapes
    (every axis but the first, in the source's layout)."""
    info = check_file(path)
    with np.load(path, allow_pickle=False) as data:
        keys = list(data.files)
        if all(n in keys for n in names):
            chosen = list(names)
        elif len(keys) == len(names):
            chosen = keys
        else:
            raise ShapeError(f"--calibration {path}: holds arrays {keys}; the model's inputs are {list(names)} "
                             "(name the arrays after the inputs, or give one array per input in order)")
        arrays = []
        for key, name, shape, dtype in zip(chosen, names, shapes, dtypes):
            got = info[key][0]
            if tuple(got[1:]) != tuple(shape[1:]):
                raise ShapeError(f"--calibration {path}: array {key!r} has shape {list(got)}; input {name!r} takes "
                                 f"[N, {', '.join(map(str, shape[1:]))}] in the source's layout")
            arrays.append(np.asarray(data[key][:MAX_SAMPLES]).astype(dtype))
    counts = {a.shape[0] for a in arrays}
    if len(counts) > 1:
        raise ShapeError(f"--calibration {path}: the arrays hold different numbers of samples {sorted(counts)}")
    return Calibration(tuple(arrays), str(path))


SEEDED_PER_DISTRIBUTION = 32


def seeded(specs: Sequence[InputSpec], seed: int) -> Calibration:
    """The fallback: samples drawn like the verification inputs (same distributions, other seeds, so the verdict is
    not taken on the calibration data itself), ``SEEDED_PER_DISTRIBUTION`` of each."""
    big = [replace(s, shape=(SEEDED_PER_DISTRIBUTION, *s.shape[1:])) for s in specs]
    sets = make_input_sets(big, seed=seed + 1000)
    arrays = tuple(np.concatenate([s.arrays[i] for s in sets]) for i in range(len(specs)))
    return Calibration(arrays, f"seeded sample inputs ({', '.join(s.distribution for s in sets)}; seed {seed + 1000})")


def representative_feeds(calibration: Calibration, source_layouts: Sequence[Layout],
                         model_layouts: Sequence[Layout]) -> list[list[np.ndarray]]:
    """One list of batch-1 feeds per sample, each moved from the source's layout into the built model's."""
    moved = [to_layout(a, s, m) for a, s, m in zip(calibration.arrays, source_layouts, model_layouts)]
    return [[np.ascontiguousarray(a[k:k + 1]) for a in moved] for k in range(calibration.samples)]
