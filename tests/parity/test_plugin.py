"""The pytest plugin: the README example in its own pytest process, failure messages, options, import cost."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
SECTION = REPO / "README.md"


def readme_example() -> str:
    text = SECTION.read_text()
    block = text.split("<!-- crossport-example:start -->")[1].split("<!-- crossport-example:end -->")[0]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


FAILING = '''
import pytest


@pytest.mark.parity(atol=2e-4, rtol=1e-4, reason="deliberately broken copy")
def test_broken(parity):
    parity.check({pt2!r}, {broken!r})
'''


def test_readme_example_runs_in_a_separate_pytest(pytester: pytest.Pytester, artifacts: dict[str, Path]) -> None:
    pytester.makepyfile(test_my_model=readme_example())
    pytester.makepyfile(test_failing=FAILING.format(pt2=str(artifacts["pt2"]), broken=str(artifacts["broken"])))
    reports = pytester.path / "parity-reports"
    env_path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    pytester._monkeypatch.setenv("PYTHONPATH", env_path)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--parity-report", str(reports),
                                           "--parity-seed", "7", timeout=240)
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "parity check failed (deliberately broken copy)" in out
    assert "first divergent layer: bn2" in out and "max abs" in out
    assert "|a-b| <= 0.0002 + 0.0001*|b|" in out  # the marker's tolerances
    written = sorted(p.name for p in reports.iterdir())
    assert len(written) == 4 and sum(n.endswith(".html") for n in written) == 2  # fixture checks only
    failing_json = next(p for p in reports.iterdir() if p.name.startswith("test_failing") and p.suffix == ".json")
    assert '"seed": 7' in failing_json.read_text()


def test_assert_parity_without_pytest_fixture(artifacts: dict[str, Path]) -> None:
    from converter.testing import ParityMismatch, assert_parity, check_parity

    report = assert_parity(str(artifacts["pt2"]), str(artifacts["onnx"]), atol=1e-4, rtol=1e-4)
    assert report.passed
    with pytest.raises(ParityMismatch, match="first divergent layer: bn2") as info:
        assert_parity(str(artifacts["pt2"]), str(artifacts["broken"]))
    assert info.value.report.first_divergent.name == "bn2"
    assert not check_parity(str(artifacts["pt2"]), str(artifacts["broken"]), layers=False).passed


def test_in_memory_models(artifacts: dict[str, Path]) -> None:
    import numpy as np

    from converter.frameworks import keras
    from converter.testing import assert_parity
    from fixtures.models import build

    model = keras().models.load_model(str(artifacts["keras"]))
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    report = assert_parity(build("small_cnn"), model, inputs={"x": x}, layouts=["x=nhwc"])
    assert report.inputs[0].shape == (3, 3, 16, 16) and report.inputs[0].candidate_layout == "NHWC"


def test_plugin_import_is_light() -> None:
    code = (
        "import sys, time\n"
        "import pytest\n"
        "before = set(sys.modules)\n"
        "t = time.perf_counter()\n"
        "import converter.pytest_plugin\n"
        "dt = time.perf_counter() - t\n"
        "heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in "
        "('torch', 'tensorflow', 'keras', 'onnx', 'onnxruntime', 'numpy'))\n"
        "print(f'{dt * 1000:.2f}', heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    ms, heavy = proc.stdout.split(" ", 1)
    assert heavy.strip() == "[]", heavy
    assert float(ms) < 50, ms
    print(f"plugin import: {ms} ms")
