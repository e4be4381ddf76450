"""The rewrite's verification report is a ``converter.reporting.Report`` (strict JSON, truthy when it passed) and
its inputs come from the one seeded generator, ``converter.parity.inputs.make_input_sets``."""
from __future__ import annotations

import json

import numpy as np

from converter.parity.compare import compare_arrays
from converter.parity.inputs import InputSpec, make_input_sets
from converter.reporting import Report
from converter.rewrite.verify import VerifyOptions, VerifyReport, format_report, sample_batches


def _strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_report_is_the_one_report_type_and_writes_strict_json() -> None:
    tol = VerifyOptions(((2, 3),)).tolerance
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    good = VerifyReport("Net", "channels_last", (compare_arrays("normal(seed=0):out0", a, a, tol),), ("normal(seed=0)",))
    assert isinstance(good, Report) and bool(good)
    data = _strict(good.to_json())
    assert data["passed"] is True and data["class"] == "Net" and data["outputs"][0]["name"] == "normal(seed=0):out0"
    empty = VerifyReport("Net", "channels_last", (), ())
    assert not empty and _strict(empty.to_json())["max_abs_error"] == "inf"
    bad = VerifyReport("Net", "channels_last", (compare_arrays("normal(seed=0):out0", a + 1, a, tol),), ("x",))
    assert not bad and "verify FAILED" in format_report(bad) and "verify passed" in format_report(good)


def test_batches_are_the_parity_input_sets() -> None:
    ours = sample_batches([(2, 3, 4)], 7, None)
    theirs = make_input_sets([InputSpec("input0", (2, 3, 4))], 7)
    assert [label for label, _ in ours] == ["normal(seed=7)", "uniform(seed=8)"]
    for (_, arrays), expected in zip(ours, theirs):
        np.testing.assert_array_equal(arrays[0], expected.arrays[0])
    tokens = sample_batches([(2, 5)], 0, 11)
    assert tokens[0][0] == "int[0,11)(seed=0)" and tokens[0][1][0].dtype == np.int64
    assert 0 <= tokens[1][1][0].min() and tokens[1][1][0].max() < 11
