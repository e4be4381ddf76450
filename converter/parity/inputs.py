"""Seeded sample inputs: more than one batch and more than one distribution, so a model that only agrees on
easy inputs is not called verified."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from converter.errors import ShapeError

# Refuse input sets that would not fit comfortably in memory (bytes per array).
MAX_INPUT_BYTES = 2 * 1024**3
# Each input set is held several times over during a verification: by the source runtime, by onnxruntime, by the
# target, as float64 in the comparison, plus activations at least as large. Budget that many copies against the
# memory actually available, so an impossible --input-shape is refused before anything is allocated (the OOM killer
# would otherwise end the process with no message and possibly a half-written work directory).
COPIES_PER_SET = 8


@dataclass(frozen=True)
class InputSpec:
    """One model input in the source's (logical) layout."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    int_range: tuple[int, int] = (0, 10)


@dataclass(frozen=True)
class InputSet:
    """One batch of feeds with how it was drawn."""

    label: str
    seed: int
    distribution: str
    arrays: tuple[np.ndarray, ...]

    def describe(self) -> dict:
        return {"label": self.label, "seed": self.seed, "distribution": self.distribution,
                "shapes": [list(a.shape) for a in self.arrays], "dtypes": [str(a.dtype) for a in self.arrays]}


def same_feeds(given: Sequence[np.ndarray], feeds: Sequence[np.ndarray]) -> bool:
    """The same arrays, or equal ones (shape, dtype and values): has a runner already run these feeds?"""
    return len(given) == len(feeds) and all(
        a is b or (np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype and np.array_equal(a, b))
        for a, b in zip(given, feeds))


def _nbytes(shape: tuple[int, ...], dtype: str) -> float:
    """Bytes of one array, in float arithmetic so an absurd shape cannot overflow."""
    return float(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize


def available_memory() -> int | None:
    """Memory the kernel says can be allocated without swapping (MemAvailable), or None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def check_spec(spec: InputSpec) -> None:
    if any(d <= 0 for d in spec.shape):
        raise ShapeError(f"input {spec.name!r}: shape {spec.shape} has a non-positive dimension; "
                         "every --input-shape dimension must be a positive integer")
    try:
        np.dtype(spec.dtype)
    except TypeError as err:
        raise ShapeError(f"input {spec.name!r}: unknown dtype {spec.dtype!r} (check --input-dtype)") from err
    nbytes = _nbytes(spec.shape, spec.dtype)
    if nbytes > MAX_INPUT_BYTES:
        raise ShapeError(
            f"input {spec.name!r}: shape {spec.shape} needs {nbytes / 2**30:.1f} GiB per batch; refusing to allocate "
            f"more than {MAX_INPUT_BYTES / 2**30:.0f} GiB per input (pass a smaller --input-shape)"
        )


def check_memory(specs: list[InputSpec], n_sets: int, dynamic_batch: bool) -> None:
    """Refuse, before allocating, input sets whose verification would need more memory than is available."""
    per_set = 0.0
    for s in specs:
        shape = (s.shape[0] + 1, *s.shape[1:]) if dynamic_batch and s.shape else s.shape
        per_set += _nbytes(shape, s.dtype)
    need = per_set * n_sets * COPIES_PER_SET
    avail = available_memory()
    if avail is not None and need > avail:
        shapes = ", ".join(f"{s.name}={'x'.join(map(str, s.shape))}" for s in specs)
        raise ShapeError(
            f"--input-shape {shapes}: verifying needs about {need / 2**30:.1f} GiB ({n_sets} input sets of "
            f"{per_set / 2**30:.2f} GiB, each held ~{COPIES_PER_SET}x), more than the {avail / 2**30:.1f} GiB "
            "available; refusing to allocate. Pass a smaller --input-shape (e.g. batch 1-2)"
        )


def _draw(spec: InputSpec, batch: int | None, rng: np.random.Generator, distribution: str) -> np.ndarray:
    shape = (batch, *spec.shape[1:]) if batch is not None and spec.shape else spec.shape
    dtype = np.dtype(spec.dtype)
    if dtype.kind in "iu":
        lo, hi = spec.int_range
        return rng.integers(lo, hi, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) > 0.5
    if distribution == "normal":
        return rng.standard_normal(shape).astype(dtype)
    if distribution == "uniform":
        return rng.random(shape).astype(dtype)
    if distribution == "large":
        return (rng.standard_normal(shape) * 100.0).astype(dtype)
    raise ValueError(distribution)


DISTRIBUTIONS = ("normal", "uniform", "large")


def make_input_sets(specs: list[InputSpec], seed: int = 0, dynamic_batch: bool = False,
                    distributions: tuple[str, ...] = ("normal", "uniform"),
                    other_batch: int | None = None) -> list[InputSet]:
    """One draw per distribution (standard normal, uniform [0, 1), large = normal x 100), each with its own seed.
    When the batch is dynamic every second draw uses another batch, so a batch-size bug cannot hide: batch 1 --
    the deployment case, where a stray squeeze or a batch fixed at trace time shows -- or batch + 1 when the
    first draw is already batch 1. ``other_batch``: that batch instead (a source not exported for batch 1)."""
    for s in specs:
        check_spec(s)
    check_memory(specs, len(distributions), dynamic_batch)
    unknown = [d for d in distributions if d not in DISTRIBUTIONS]
    if unknown or not distributions:
        raise ShapeError(f"unknown input distribution(s) {unknown}; expected some of {', '.join(DISTRIBUTIONS)}")
    sets = []
    base = specs[0].shape[0] if specs and specs[0].shape else 1
    other = other_batch if other_batch is not None else base + 1 if base == 1 else 1
    plan = [(d, other if dynamic_batch and k % 2 == 1 else base) for k, d in enumerate(distributions)]
    for k, (dist, batch) in enumerate(plan):
        rng = np.random.default_rng(seed + k)
        arrays = tuple(_draw(s, batch if dynamic_batch else None, rng, dist) for s in specs)
        sets.append(InputSet(label=f"{dist}-b{batch}", seed=seed + k, distribution=dist, arrays=arrays))
    return sets


# Rows per distribution added when a metric is a share of rows (top-1 agreement of a quantized model): with the two
# default batches alone (5 rows) one disagreeing row is already 80 %.
QUALITY_ROWS = 16


def quality_sets(specs: list[InputSpec], seed: int, dynamic_batch: bool, rows: int = QUALITY_ROWS) -> list[InputSet]:
    """``rows`` more rows per distribution on their own seeds: one batch each when the batch is dynamic, else as
    many batches of the fixed size as it takes."""
    if not specs or not specs[0].shape:
        return []
    if dynamic_batch:
        return make_input_sets([replace(s, shape=(rows, *s.shape[1:])) for s in specs], seed=seed + 2000)
    out = []
    for k in range(-(-rows // max(1, specs[0].shape[0]))):
        out.extend(replace(s, label=f"{s.label}-{k + 1}") for s in make_input_sets(specs, seed=seed + 2000 + 2 * k))
    return out
