"""Inference latency of a runner on the first row of a verification input set: warm-up, then the median of N calls.

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
from converter.parity.inputs import same_feeds

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
        warm = f", {self.warmup} warm-up" if self.warmup else ""
        return (f"{self.runtime} ({self.role}): {self.median_ms:.2f} ms median of {self.runs} "
                f"(batch {self.batch}, {self.input_set}{warm})")


MIN_RUNS_IN_BUDGET = 2
# Without a warm-up call the first timed call may still pay a one-time cost (a new input shape): the budget keeps
# at least three calls, so the median is never that first one alone.
MIN_RUNS_WARM = 3


def time_call(call: Callable[[], Any], runs: int = DEFAULT_RUNS, warmup: int = WARMUP,
              budget_s: float | None = None, first: float | None = None) -> list[float]:
    """Seconds of each of ``runs`` calls after ``warmup`` untimed ones; with ``budget_s``, stop once the timed calls
    add up to it (after at least ``MIN_RUNS_IN_BUDGET``). ``first``: the seconds of a call the caller already made
    without a warm-up before it, counted as the first sample -- then the floor is ``MIN_RUNS_WARM``."""
    for _ in range(warmup):
        call()
    floor = MIN_RUNS_IN_BUDGET if first is None else MIN_RUNS_WARM
    samples: list[float] = [] if first is None else [first]
    while len(samples) < max(1, runs):
        if budget_s is not None and len(samples) >= floor and sum(samples) >= budget_s:
            break
        t0 = time.perf_counter()
        call()
        samples.append(time.perf_counter() - t0)
    return samples


def measure(runner: Any, arrays: Sequence[np.ndarray], layouts: Sequence[Layout], label: str, role: str,
            runs: int = DEFAULT_RUNS, budget_s: float | None = None, warm: bool = False) -> Latency:
    """Time ``runner`` on the first row of ``arrays`` (given in ``layouts``, moved into the runner's own input
    layouts): batch 1 is the deployment case, and half the cost of timing the set's batch of 2. A runner with a
    fixed batch that refuses one row is timed on the whole set. ``warm``: the runner has just run the model on the
    verification sets (its loading and first-call costs are paid), so there is no untimed warm-up call -- on
    ViT-B/16 that call cost 0.2 s per runtime and measured nothing -- and its verification run on these very
    feeds, if it was the last, is the first sample."""
    warmup = 0 if warm else WARMUP
    feed = [a[:1] if np.ndim(a) else a for a in arrays]
    ready = _warmed(runner, feed, layouts, warmup) if any(np.ndim(a) and len(a) > 1 for a in arrays) else None
    if ready is None:
        feed = list(arrays)
        ready = _warmed(runner, feed, layouts, warmup, strict=True)
    call, first = ready
    samples = time_call(call, runs, warmup=0, budget_s=budget_s, first=first)  # _warmed made the first call
    batch = int(feed[0].shape[0]) if feed and np.ndim(feed[0]) else 1
    return Latency(runner.name, role, statistics.median(samples) * 1e3, len(samples), warmup, label, batch)


def latency_set(sets: Sequence[Any]) -> Any:
    """The input set latency is timed on: the first batch-1 set when verification has one (the deployment case,
    and the set the runtimes ran last, so that run is the first sample), else the first set."""
    return next((s for s in sets if s.arrays and np.ndim(s.arrays[0]) and len(s.arrays[0]) == 1), sets[0])


def _warmed(runner: Any, arrays: Sequence[np.ndarray], layouts: Sequence[Layout], warmup: int,
            strict: bool = False) -> tuple[Callable[[], Any], float | None] | None:
    """The timed call on ``arrays`` after ``warmup`` untimed calls -- or, with none, after one call that is timed
    and returned as the first sample; None when the runner refuses them (and not ``strict``). With no warm-up, a
    runner whose last verification call (``last_call``: its feeds and the seconds of the part ``timed`` times)
    was on these very feeds gives that call as the first sample instead of making it again."""
    feeds = [to_layout(a, src, dst) for a, src, dst in zip(arrays, layouts, runner.input_layouts)]
    timed = getattr(runner, "timed", None)
    try:
        call = timed(feeds) if callable(timed) else (lambda: runner.run(feeds))
        for _ in range(warmup):
            call()
        if warmup:
            return call, None
        last = getattr(runner, "last_call", None)
        if last is not None and same_feeds(last[0], feeds):
            return call, last[1]
        t0 = time.perf_counter()
        call()
        return call, time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a runtime's own exception types (a fixed batch)
        if strict:
            raise
        return None


def format_latency(entries: Sequence[Latency]) -> list[str]:
    """Report lines: each runtime, and the artifact's time relative to the source's."""
    if not entries:
        return []
    source = next((e for e in entries if e.role == "source"), None)
    warmups = {e.warmup for e in entries}
    how = (f"{warmups.pop()} warm-up call" if len(warmups) == 1 and 0 not in warmups else
           "no warm-up call: each runtime has just run the verification sets" if warmups == {0} else
           "warm-up calls as listed")
    lines = [f"  latency (median; {how}):"]
    for e in entries:
        ratio = ""
        if source is not None and e is not source and source.median_ms > 0:
            ratio = f"  ({e.median_ms / source.median_ms:.2f}x the source)"
        lines.append(f"    {e.describe()}{ratio}")
    return lines
