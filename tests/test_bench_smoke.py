"""CI smoke subset of the zoo benchmark: the two smallest reliable models per direction, through the same code path
as ``make bench`` (``benchmarks/zoo.py``: build + calibrate, ``crossport convert`` as a subprocess, report parsing).

Fails when a model/target that converted or verified in the recorded run (``benchmarks/expected.json``, written by
``benchmarks/zoo.py --update-expected``) no longer does. Nothing about time is asserted: timings live in
``benchmarks/results/zoo.json``, measured at known load.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.zoo import EXPECTED, ZooConfig, regressions, run_zoo

# PyTorch -> .keras: the two smallest torchvision CNNs; Keras -> .pt2: the two smallest Keras models (all verified
# in the recorded full run).
SMOKE_MODELS = ("squeezenet1_1", "mobilenet_v3_small", "keras_transformer", "keras_lstm")


@pytest.mark.slow
def test_zoo_smoke_subset_still_converts_and_verifies(tmp_path: Path) -> None:
    expected = json.loads(EXPECTED.read_text())
    missing = [name for name in SMOKE_MODELS if name not in expected]
    assert not missing, f"{missing} have no recorded status; run benchmarks/zoo.py --update-expected"
    config = ZooConfig(only=SMOKE_MODELS, quick=True, measure=False, raw_baseline=False, startup=False,
                       footprint=False, log=lambda _msg: None)
    results = run_zoo(config, work=tmp_path)
    ran = {m["name"]: [c["target"] for c in m["conversions"]] for m in results["models"]}
    assert set(ran) == set(SMOKE_MODELS)
    # Every smoke model must be held to something: at least one of its targets verified in the recorded run.
    for name, targets in ran.items():
        assert any(expected[name].get(t, {}).get("verified") for t in targets), (name, expected[name])
    assert not regressions(results, expected), "\n".join(regressions(results, expected))
