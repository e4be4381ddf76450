"""Every report is valid JSON for a strict reader, also when a hop saw non-finite errors (a shape mismatch)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from converter.layout import Layout
from converter.parity.compare import Tolerance
from converter.parity.inputs import InputSpec, make_input_sets
from converter.parity.report import run_hop
from converter.result import ConversionReport


@dataclass
class _FnRunner:
    """A runner over a plain numpy function (the Runner protocol, no framework needed)."""

    fn: object
    input_layouts: tuple[Layout, ...] = (Layout.NONE,)
    output_layouts: tuple[Layout, ...] = (Layout.NONE,)
    name: str = "fn"

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.fn(feeds[0])]  # type: ignore[operator]


def _strict(text: str) -> object:
    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


def test_shape_mismatch_hop_report_is_strict_json() -> None:
    sets = make_input_sets([InputSpec("x", (2, 3), "float32")], seed=0)
    hop = run_hop(_FnRunner(lambda x: x * 2.0, name="reference"), _FnRunner(lambda x: x[:, :2], name="candidate"),
                  sets, (Layout.NONE,), ["y"], Tolerance(1e-4, 1e-4))
    assert not hop.passed
    report = ConversionReport(
        source="m.onnx", source_format="onnx", target="keras", output=None, route=("onnx", "keras"), opset=17,
        exporter="given", inputs=(), outputs=(), dynamic_batch=False, verified=True, passed=False, forced=False,
        hops=(hop,), input_sets=tuple(s.describe() for s in sets), atol=1e-4, rtol=1e-4, timings={"verify": 0.1},
        versions={}, trainable_params={"pytorch": np.int64(3)},  # type: ignore[dict-item]
    )
    assert not report
    data = _strict(report.to_json())
    assert isinstance(data, dict) and data["passed"] is False and data["failed_hop"] == hop.name
    assert data["trainable_params"] == {"pytorch": 3}
    errors = [o["max_abs_error"] for o in data["hops"][0]["outputs"]]
    assert errors and all(isinstance(e, (str, float, int)) for e in errors)
    assert data["hops"][0]["outputs"][0]["max_abs_error"] == "inf"
    assert "Infinity" not in report.to_json() and "NaN" not in report.to_json()
