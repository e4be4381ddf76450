"""The report's latency stops timing a slow runtime early (``latency_budget_s``) but never below two timed calls
(three when a runtime warm from verification is timed without a warm-up call), and a number of runs the user asked
for is run in full."""
from __future__ import annotations

import time

from converter.parity.latency import MIN_RUNS_IN_BUDGET, MIN_RUNS_WARM, time_call


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


def test_warm_runtime_is_timed_from_its_first_call() -> None:
    """No untimed call for a runtime that just ran the verification sets; its first call is a sample, and the budget
    keeps three so a slow first call is not the median."""
    import numpy as np

    from converter.layout import Layout
    from converter.parity.latency import measure

    calls: list[float] = []
    delays = iter([0.12, 0.03, 0.03, 0.03, 0.03, 0.03])

    class Slow:  # a runner whose first batch-1 call is slower (a new shape)
        name = "slow-first"
        input_layouts = (Layout.NONE,)

        def run(self, feeds):  # noqa: ANN001, ANN202
            calls.append(1)
            time.sleep(next(delays))
            return [feeds[0]]

    x = np.zeros((2, 4), np.float32)
    warm = measure(Slow(), [x], [Layout.NONE], "normal-b2", "source", runs=5, budget_s=0.05, warm=True)
    assert (warm.warmup, warm.runs, len(calls)) == (0, MIN_RUNS_WARM, MIN_RUNS_WARM) == (0, 3, 3)
    assert warm.median_ms < 100  # the slow first call is one sample of three, not the median
    assert "warm-up" not in warm.describe()
    calls.clear()
    delays = iter([0.0] * 10)
    cold = measure(Slow(), [x], [Layout.NONE], "normal-b2", "source", runs=4, budget_s=None)
    assert (cold.warmup, cold.runs, len(calls)) == (1, 4, 5) and "1 warm-up" in cold.describe()
    calls.clear()
    exact = measure(Slow(), [x], [Layout.NONE], "normal-b2", "source", runs=1, budget_s=0.0, warm=True)
    assert (exact.runs, len(calls)) == (1, 1)  # --latency-runs 1: exactly one call


def test_first_sample_raises_the_floor() -> None:
    calls: list[int] = []
    samples = time_call(_sleeper(0.03, calls), runs=5, warmup=0, budget_s=0.01, first=0.05)
    assert len(samples) == MIN_RUNS_WARM and len(calls) == MIN_RUNS_WARM - 1


def test_verification_run_on_the_same_feeds_is_the_first_sample() -> None:
    """A runtime's verification run on the batch-1 set is its first latency sample (``latency.latency_set``,
    ``TorchRunner.last_call``): two more calls make the three, not three more; other feeds get no such credit."""
    import numpy as np
    import torch

    from converter.layout import Layout
    from converter.parity.inputs import InputSpec, make_input_sets
    from converter.parity.latency import latency_set, measure
    from converter.parity.runners import TorchRunner

    class Counted(torch.nn.Linear):
        calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            Counted.calls += 1
            return super().forward(x)

    sets = make_input_sets([InputSpec("x", (2, 4))], seed=0, dynamic_batch=True)
    assert latency_set(sets) is sets[1] and sets[1].label == "uniform-b1"
    assert latency_set(sets[:1]) is sets[0]  # no batch-1 set: the first row of the first set
    runner = TorchRunner(Counted(4, 3).eval(), (Layout.NONE,), ())
    for s in sets:  # the verification runs, batch 1 last
        runner.run(s.arrays)
    verification_s = runner.last_call[1]
    timed = latency_set(sets)
    warm = measure(runner, timed.arrays, [Layout.NONE], timed.label, "source", runs=5, budget_s=0.0, warm=True)
    assert (Counted.calls, warm.runs, warm.input_set) == (2 + 2, MIN_RUNS_WARM, "uniform-b1")
    assert verification_s > 0
    Counted.calls = 0
    other = measure(runner, sets[0].arrays, [Layout.NONE], sets[0].label, "source", runs=5, budget_s=0.0, warm=True)
    assert (Counted.calls, other.runs) == (MIN_RUNS_WARM, MIN_RUNS_WARM)  # another feed: every sample is a call
    assert np.shape(runner.last_call[0][0]) == (1, 4)
