"""pytest plugin (entry point ``pytest11: crossport``): the ``parity`` fixture, the ``parity`` marker, two options.

Loaded at every pytest start-up of every project that installs crossport, so it imports nothing but pytest here;
torch / TensorFlow / onnxruntime load only when a test calls ``parity.check``.

    @pytest.mark.parity(atol=1e-3, rtol=1e-3, reason="float16 TFLite")
    def test_export(parity):
        parity.check("model.pt2", "model.tflite")
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crossport", "crossport parity checks")
    group.addoption("--parity-report", metavar="DIR", default=None,
                    help="Write a JSON and an HTML report of every parity check into DIR.")
    group.addoption("--parity-seed", type=int, default=None,
                    help="Seed for the inputs parity checks draw (default 0).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "parity(atol=None, rtol=None, reason=None): tolerances for the parity checks of this test "
                   "(a check's own atol/rtol arguments win); reason is shown with a failure.")


@dataclass
class ParityChecker:
    """What the ``parity`` fixture returns: ``check`` compares two models under this test's settings."""

    nodeid: str
    seed: int = 0
    report_dir: Path | None = None
    atol: float | None = None
    rtol: float | None = None
    reason: str | None = None
    reports: list[Any] = field(default_factory=list, repr=False)

    def check(self, reference: Any, candidate: Any, inputs: Any = None, *, atol: float | None = None,
              rtol: float | None = None, **kwargs: Any) -> Any:
        """Assert ``candidate`` matches ``reference`` (see ``converter.testing.check_parity`` for the options)."""
        __tracebackhide__ = True
        from converter.testing import ParityMismatch, check_parity

        a = atol if atol is not None else self.atol if self.atol is not None else 1e-4
        r = rtol if rtol is not None else self.rtol if self.rtol is not None else 1e-4
        kwargs.setdefault("seed", self.seed)
        result = check_parity(reference, candidate, inputs, atol=a, rtol=r, **kwargs)
        self.reports.append(result)
        if self.report_dir is not None:
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.nodeid).strip("_") + f"-{len(self.reports)}"
            self.report_dir.mkdir(parents=True, exist_ok=True)
            result.write(self.report_dir / f"{stem}.json")
            result.write(self.report_dir / f"{stem}.html")
        if not result.passed:
            why = f" ({self.reason})" if self.reason else ""
            raise ParityMismatch(f"parity check failed{why}\n" + result.format_text(), result)
        return result


@pytest.fixture
def parity(request: pytest.FixtureRequest) -> ParityChecker:
    """Compare two models: ``parity.check(reference, candidate, inputs=..., atol=..., rtol=...)``."""
    marker = request.node.get_closest_marker("parity")
    opts = dict(marker.kwargs) if marker is not None else {}
    seed = request.config.getoption("--parity-seed")
    report_dir = request.config.getoption("--parity-report")
    return ParityChecker(
        nodeid=request.node.nodeid, seed=0 if seed is None else int(seed),
        report_dir=Path(report_dir) if report_dir else None,
        atol=opts.get("atol"), rtol=opts.get("rtol"), reason=opts.get("reason"),
    )
