"""Inference latency of a runner on one verification input set: warm-up, then the median of N timed calls.

Every written artifact is timed next to its source, so a report answers "is it fast" as well as "does it match".
A runner may offer ``timed(feeds)``: a zero-argument call that does only the inference (e.g. a TFLite interpreter
already allocated and fed); otherwise ``run(feeds)`` is timed as a whole.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from converter.layout import Layout, to_layout

DEFAULT_RUNS = 5
WARMUP = 1


@dataclass(frozen=True)
class Latency:
    """One runtime's latency: the median of ``runs`` timed calls after ``warmup`` untimed ones."""

    runtime: str
    role: str  # "source" or "artifact" (or "float reference" for the model before quantization)
    median_ms: float
    runs: int
    warmup: int
    input_set: str
    batch: int

    def to_dict(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "role": self.role, "median_ms": round(self.median_ms, 4),
                "runs": self.runs, "warmup": self.warmup, "input_set": self.input_set, "batch": self.batch}

    def describe(self) -> str:
        return (f"{self.runtime} ({self.role}): {self.median_ms:.2f} ms median of {self.runs} "
                f"(batch {self.batch}, {self.input_set})")


MIN_RUNS_IN_BUDGET = 2


def time_call(call: Callable[[], Any], runs: int = DEFAULT_RUNS, warmup: int = WARMUP,
              budget_s: float | None = None) -> list[float]:
    """Seconds of each of ``runs`` calls after ``warmup`` untimed ones; with ``budget_s``, stop once the timed calls
    add up to it (after at least ``MIN_RUNS_IN_BUDGET``)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
        if budget_s is not None and len(samples) >= MIN_RUNS_IN_BUDGET and sum(samples) >= budget_s:
            break
    return samples


def measure(runner: Any, arrays: Sequence[np.ndarray], layouts: Sequence[Layout], label: str, role: str,
            runs: int = DEFAULT_RUNS, budget_s: float | None = None) -> Latency:
    """Time ``runner`` on ``arrays`` (given in ``layouts``, moved into the runner's own input layouts)."""
    feeds = [to_layout(a, src, dst) for a, src, dst in zip(arrays, layouts, runner.input_layouts)]
    timed = getattr(runner, "timed", None)
    call = timed(feeds) if callable(timed) else (lambda: runner.run(feeds))
    samples = time_call(call, runs, budget_s=budget_s)
    batch = int(arrays[0].shape[0]) if arrays and np.ndim(arrays[0]) else 1
    return Latency(runner.name, role, statistics.median(samples) * 1e3, len(samples), WARMUP, label, batch)


def format_latency(entries: Sequence[Latency]) -> list[str]:
    """Report lines: each runtime, and the artifact's time relative to the source's."""
    if not entries:
        return []
    source = next((e for e in entries if e.role == "source"), None)
    lines = ["  latency (median; " + f"{entries[0].warmup} warm-up call):"]
    for e in entries:
        ratio = ""
        if source is not None and e is not source and source.median_ms > 0:
            ratio = f"  ({e.median_ms / source.median_ms:.2f}x the source)"
        lines.append(f"    {e.describe()}{ratio}")
    return lines
