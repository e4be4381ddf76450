"""Seeded sample inputs: more than one batch and more than one distribution, so a model that only agrees on
easy inputs is not called verified."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.errors import ShapeError

# Refuse input sets that would not fit comfortably in memory (bytes per array).
MAX_INPUT_BYTES = 2 * 1024**3


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


def check_spec(spec: InputSpec) -> None:
    if any(d <= 0 for d in spec.shape):
        raise ShapeError(f"input {spec.name!r}: shape {spec.shape} has a non-positive dimension")
    nbytes = int(np.prod(spec.shape, dtype=np.float64)) * np.dtype(spec.dtype).itemsize
    if nbytes > MAX_INPUT_BYTES:
        raise ShapeError(
            f"input {spec.name!r}: shape {spec.shape} needs {nbytes / 2**30:.1f} GiB per batch; refusing to allocate"
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
                    distributions: tuple[str, ...] = ("normal", "uniform")) -> list[InputSet]:
    """One draw per distribution (standard normal, uniform [0, 1), large = normal x 100), each with its own seed;
    every second draw uses batch + 1 when the batch is dynamic, so a batch-size bug cannot hide."""
    for s in specs:
        check_spec(s)
    unknown = [d for d in distributions if d not in DISTRIBUTIONS]
    if unknown or not distributions:
        raise ShapeError(f"unknown input distribution(s) {unknown}; expected some of {', '.join(DISTRIBUTIONS)}")
    sets = []
    base = specs[0].shape[0] if specs and specs[0].shape else 1
    plan = [(d, base + 1 if dynamic_batch and k % 2 == 1 else base) for k, d in enumerate(distributions)]
    for k, (dist, batch) in enumerate(plan):
        rng = np.random.default_rng(seed + k)
        arrays = tuple(_draw(s, batch if dynamic_batch else None, rng, dist) for s in specs)
        sets.append(InputSet(label=f"{dist}-b{batch}", seed=seed + k, distribution=dist, arrays=arrays))
    return sets
