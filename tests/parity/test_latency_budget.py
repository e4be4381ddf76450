"""The report's latency stops timing a slow runtime early (``latency_budget_s``) but never below two timed calls,
and a number of runs the user asked for is run in full."""
from __future__ import annotations

import time

from converter.parity.latency import MIN_RUNS_IN_BUDGET, time_call


def _sleeper(seconds: float, calls: list[int]):  # noqa: ANN202
    def call() -> None:
        calls.append(1)
        time.sleep(seconds)
    return call


def test_budget_stops_after_two_slow_calls() -> None:
    calls: list[int] = []
    samples = time_call(_sleeper(0.03, calls), runs=5, warmup=1, budget_s=0.05)
    assert len(samples) == MIN_RUNS_IN_BUDGET == 2 and len(calls) == 3  # warm-up + two timed
    assert all(s >= 0.03 for s in samples)


def test_fast_calls_use_every_run() -> None:
    calls: list[int] = []
    assert len(time_call(_sleeper(0.0, calls), runs=5, warmup=1, budget_s=1.0)) == 5 and len(calls) == 6


def test_no_budget_runs_in_full() -> None:
    calls: list[int] = []
    assert len(time_call(_sleeper(0.02, calls), runs=4, warmup=0, budget_s=None)) == 4 and len(calls) == 4


def test_timed_at_batch_one_unless_the_model_fixes_its_batch() -> None:
    import numpy as np
    import torch

    from converter.layout import Layout
    from converter.parity.latency import measure
    from converter.parity.runners import TorchRunner

    class FixedBatch(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(2, 4).sum(1)

    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    free = measure(TorchRunner(torch.nn.Linear(4, 3).eval(), (Layout.NONE,), ()), [x], [Layout.NONE], "normal-b2",
                   "source", runs=3)
    fixed = measure(TorchRunner(FixedBatch().eval(), (Layout.NONE,), ()), [x], [Layout.NONE], "normal-b2", "source",
                    runs=3)
    assert (free.batch, free.runs) == (1, 3) and (fixed.batch, fixed.runs) == (2, 3)
