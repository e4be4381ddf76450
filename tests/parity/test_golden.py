"""Golden files: saved once with the reference, checked later without the reference framework."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from converter.cli import main

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", *args])
    return result.exit_code, result.output


def test_save_and_check_golden(artifacts: dict[str, Path], tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    code, out = cli(str(artifacts["pt2"]), str(artifacts["keras"]), "--save-golden", str(golden), "--atol", "2e-4",
                    "-q")
    assert code == 0, out
    manifest = json.loads((golden / "golden.json").read_text())
    assert manifest["kind"] == "crossport.golden" and manifest["tolerance"]["atol"] == 2e-4
    assert manifest["versions"]["torch"] and manifest["opset"] == 18 and manifest["route"][0] == "pt2"
    assert set(manifest["sha256"]) == {"inputs.npz", "outputs.npz"} and manifest["candidate_sha256"]
    assert [t["candidate_layout"] for t in manifest["inputs"]] == ["NHWC"]

    code, out = cli(str(artifacts["keras"]), "--golden", str(golden))
    assert code == 0, out
    assert "against golden" in out and "0.0002" in out  # the stored tolerance is used
    code, out = cli(str(artifacts["onnx"]), "--golden", str(golden), "-q")  # another candidate, NCHW
    assert code == 0, out
    code, out = cli(str(artifacts["broken"]), "--golden", str(golden))
    assert code == 1, out

    # An "upgrade": the golden files claim another TensorFlow; a failing check says what changed.
    manifest["versions"]["tensorflow"] = "2.18.0"
    (golden / "golden.json").write_text(json.dumps(manifest))
    code, out = cli(str(artifacts["broken"]), "--golden", str(golden), "--atol", "1e-9", "--rtol", "0")
    assert code == 1 and "tensorflow 2.18.0 -> " in out

    (golden / "outputs.npz").write_bytes((golden / "outputs.npz").read_bytes()[:-10] + b"0" * 10)
    code, out = cli(str(artifacts["keras"]), "--golden", str(golden))
    assert code == 4 and "changed" in out
    assert cli(str(artifacts["keras"]), "--golden", str(tmp_path / "nothing"))[0] == 3


def test_golden_check_does_not_need_torch(artifacts: dict[str, Path], tmp_path: Path) -> None:
    golden = tmp_path / "golden"
    assert cli(str(artifacts["pt2"]), str(artifacts["onnx"]), "--save-golden", str(golden), "-q")[0] == 0
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # as if PyTorch were not installed\n"
        "from converter.parity.golden import verify_golden\n"
        "from converter.parity.verify import VerifyOptions\n"
        f"r = verify_golden({str(artifacts['onnx'])!r}, {str(golden)!r}, VerifyOptions())\n"
        "assert r.passed, r.format_text()\n"
        "print('ok', 'tensorflow' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "ok False"  # an ONNX candidate needs neither torch nor TensorFlow
