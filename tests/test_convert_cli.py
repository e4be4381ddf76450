"""The convert command through Click's runner: help, reports, and every error case with its exit code."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from converter.cli import main

CNN = ["--input-shape", "2x3x16x16"]


def _run(args: list[str], cwd: Path | None = None):
    runner = CliRunner()
    old = os.getcwd()
    try:
        if cwd:
            os.chdir(cwd)
        return runner.invoke(main, args, catch_exceptions=False)
    finally:
        os.chdir(old)


def _no_traceback(result) -> None:
    assert "Traceback" not in result.output
    lines = [l for l in result.output.strip().splitlines() if l.startswith("crossport:")]
    assert len(lines) == 1, result.output


@pytest.mark.parametrize("cmd", [[], ["convert"]])
def test_help(cmd: list[str]) -> None:
    result = _run([*cmd, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_help_imports_no_framework() -> None:
    code = ("import sys; from click.testing import CliRunner; from converter.cli import main; "
            "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
            "heavy = [m for m in ('torch', 'tensorflow', 'keras', 'onnx2tf', 'onnx') if m in sys.modules]; "
            "print(heavy); assert not heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_convert_json_report_and_file(saved_sources, tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    rep = tmp_path / "r.json"
    result = _run(["convert", str(saved_sources["pt2"]), "-o", str(out), "--report", str(rep), "-q"])
    assert result.exit_code == 0, result.output
    data = json.loads(rep.read_text())
    assert data["schema_version"] == 1 and data["passed"] and data["verified"]
    assert data["route"][0] == "pt2" and data["opset"] == 18
    assert data["inputs"][0]["source_layout"] == "NCHW" and data["inputs"][0]["target_layout"] == "NHWC"
    assert {"torch", "onnxruntime", "tensorflow", "keras"} <= set(data["versions"])
    # end to end only: onnxruntime runs to localize a failure (tests/test_verification.py), not when it passes
    assert [h["hop"] for h in data["hops"]] == ["pytorch -> keras (.keras file)"]
    assert all(s["seed"] is not None for s in data["input_sets"])


def test_latency_runs_given_are_run_in_full(saved_sources, tmp_path: Path) -> None:
    """Default: up to 5 timed calls per runtime, fewer once they take 1 s; ``--latency-runs N`` runs exactly N."""
    rep = tmp_path / "r.json"
    result = _run(["convert", str(saved_sources["pt2"]), "-o", str(tmp_path / "m.onnx"), "--report", str(rep), "-q",
                   "--latency-runs", "7"])
    assert result.exit_code == 0, result.output
    assert [e["runs"] for e in json.loads(rep.read_text())["latency"]] == [7, 7]
    result = _run(["convert", str(saved_sources["pt2"]), "-o", str(tmp_path / "d.onnx"), "--report", str(rep), "-q"])
    assert result.exit_code == 0, result.output
    assert all(2 <= e["runs"] <= 5 for e in json.loads(rep.read_text())["latency"])


def test_no_verify_says_so(saved_sources, tmp_path: Path) -> None:
    result = _run(["convert", str(saved_sources["pt2"]), "-o", str(tmp_path / "m.onnx"), "--no-verify"])
    assert result.exit_code == 0
    assert "NOT VERIFIED" in result.output and "UNVERIFIED" in result.output
    assert (tmp_path / "m.onnx").exists()


def _cases(saved: dict[str, Path], tmp: Path) -> list[tuple[str, list[str], int, str]]:
    empty = tmp / "empty.pt2"
    empty.write_bytes(b"")
    garbage = tmp / "garbage.pt2"
    garbage.write_bytes(os.urandom(2048))
    truncated = tmp / "truncated.pt2"
    truncated.write_bytes(saved["pt2"].read_bytes()[:3000])
    garbage_onnx = tmp / "garbage.onnx"
    garbage_onnx.write_bytes(os.urandom(512))
    unknown = tmp / "model.xyz"
    unknown.write_bytes(b"abc")
    existing = tmp / "exists.keras"
    existing.write_bytes(b"user data")
    return [
        ("missing path", ["convert", str(tmp / "nope.pt2"), "-o", str(tmp / "a.keras")], 3, "no such file"),
        ("empty file", ["convert", str(empty), "-o", str(tmp / "a.keras")], 4, "empty"),
        ("random bytes .pt2", ["convert", str(garbage), "-o", str(tmp / "a.keras")], 4, "garbage.pt2"),
        ("truncated .pt2", ["convert", str(truncated), "-o", str(tmp / "a.keras")], 4, "truncated.pt2"),
        ("random bytes .onnx", ["convert", str(garbage_onnx), "-o", str(tmp / "a.keras")], 4, "garbage.onnx"),
        ("unknown suffix", ["convert", str(unknown), "-o", str(tmp / "a.keras")], 4, "unknown model suffix"),
        ("directory as source", ["convert", str(tmp), "-o", str(tmp / "a.keras")], 3, "not a TensorFlow SavedModel"),
        ("state_dict without class", ["convert", str(saved["state_dict"]), "-o", str(tmp / "a.keras"), *CNN], 9,
         "--model-class"),
        ("class does not import", ["convert", str(saved["state_dict"]), "-o", str(tmp / "a.keras"), *CNN,
                                   "--model-class", "no_such_pkg.models:Net"], 9, "import failed"),
        ("class is not a module", ["convert", str(saved["state_dict"]), "-o", str(tmp / "a.keras"), *CNN,
                                   "--model-class", "fixtures.models:example_inputs", "--model-kwargs",
                                   '{"name": "mlp"}'], 9, "not a torch.nn.Module"),
        ("pickled module refused", ["convert", str(saved["pickled"]), "-o", str(tmp / "a.keras"), *CNN], 8,
         "--trust-pickle"),
        ("existing output", ["convert", str(saved["pt2"]), "-o", str(existing)], 6, "--force"),
        ("output dir missing", ["convert", str(saved["pt2"]), "-o", str(tmp / "no" / "dir" / "a.keras")], 6,
         "does not exist"),
        ("shape does not fit", ["convert", "fixtures.models:small_cnn", "-o", str(tmp / "a.keras"),
                                "--input-shape", "2x5x16x16"], 7, "does not run on inputs"),
        ("negative shape", ["convert", "fixtures.models:small_cnn", "-o", str(tmp / "a.keras"),
                            "--input-shape", "2x-3x16x16"], 7, "positive"),
        ("huge shape", ["convert", "fixtures.models:small_cnn", "-o", str(tmp / "a.keras"),
                        "--input-shape", "100000x3x1000x1000"], 7, "refusing to allocate"),
        ("no input shape", ["convert", "fixtures.models:small_cnn", "-o", str(tmp / "a.keras")], 7, "--input-shape"),
        ("bad target suffix", ["convert", str(saved["pt2"]), "-o", str(tmp / "a.bin")], 10, "pass --to"),
        ("bad kwargs json", ["convert", "fixtures.models:small_cnn", "-o", str(tmp / "a.keras"), *CNN,
                             "--model-kwargs", "{nope"], 9, "not valid JSON"),
    ]


def test_error_cases(saved_sources, tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    failures = []
    for label, args, code, text in _cases(saved_sources, tmp_path):
        before = set(p.name for p in tmp_path.iterdir())
        result = _run(args, cwd=repo)
        after = set(p.name for p in tmp_path.iterdir())
        if result.exit_code != code or text not in result.output or "Traceback" in result.output:
            failures.append(f"{label}: exit {result.exit_code} (want {code}): {result.output.strip()[-300:]}")
            continue
        _no_traceback(result)
        if after - before:
            failures.append(f"{label}: left files behind: {sorted(after - before)}")
    assert (tmp_path / "exists.keras").read_bytes() == b"user data"
    assert not failures, "\n".join(failures)


def test_unsupported_op_names_the_op(tmp_path: Path) -> None:
    src = tmp_path / "det.py"  # (CumSum, used here before, has a Keras translation now)
    src.write_text("import torch\nclass Det(torch.nn.Module):\n    def forward(self, x):\n"
                   "        return torch.linalg.det(x) * 2\n")
    out = tmp_path / "det.keras"
    result = _run(["convert", f"{src}:Det", "-o", str(out), "--input-shape", "2x3x3"])
    assert result.exit_code == 5, result.output
    assert "'Det'" in result.output and "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".crossport-")]


def test_verbose_shows_traceback(tmp_path: Path) -> None:
    result = _run(["convert", "no_such_pkg:f", "-o", str(tmp_path / "a.keras"), *CNN, "-v"])
    assert result.exit_code == 9
    assert "Traceback" in result.output
