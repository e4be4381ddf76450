"""The source model's verification runs in a forked child beside the ONNX export
(``converter.conversion.beside_export``): same verdict and outputs as running them first, output names read from
the program, and the source's own error when it cannot run the inputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

# The console script with the size threshold set from argv[1] ("on": every model, "off": none).
_CLI = """
import sys
import converter.conversion.beside_export as beside
beside.MIN_WEIGHT_BYTES = 0 if sys.argv[1] == "on" else 1 << 62
sys.argv = ["crossport", "convert", *sys.argv[2:]]
from converter.cli import entry
entry()
"""


def _named_outputs_program(path: Path, rows: int = 2) -> None:
    import torch

    class Heads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            y = torch.relu(self.conv(x))
            return {"logits": self.fc(y.mean(dim=(2, 3))), "features": y}

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Heads().eval(), (torch.randn(rows, 3, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def test_planned_outputs_read_from_the_program(tmp_path: Path) -> None:
    import torch

    from converter.adapters.pt2_load import load_exported_program
    from converter.conversion.beside_export import planned_outputs
    from converter.parity.runners import flatten_outputs

    _named_outputs_program(tmp_path / "m.pt2")
    program, _ = load_exported_program(tmp_path / "m.pt2")
    tensors, names = flatten_outputs(program.module()(torch.randn(2, 3, 8, 8)))
    assert planned_outputs(program) == (len(tensors), names) == (2, ("logits", "features"))


def test_runs_beside_the_export_give_the_same_conversion(tmp_path: Path) -> None:
    """Both ways in fresh processes (the child is only forked inside the conversion's worker): each passes, with
    the same verification sets, output names and source outputs; the overlapped runs are reported as such."""
    src = tmp_path / "heads.pt2"
    _named_outputs_program(src)
    reports = {}
    for mode in ("on", "off"):
        out, report = tmp_path / f"{mode}.tflite", tmp_path / f"{mode}.json"
        done = subprocess.run([sys.executable, "-c", _CLI, mode, str(src), "-o", str(out), "-q", "--report",
                               str(report)], capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        reports[mode] = json.loads(report.read_text())
    on, off = reports["on"], reports["off"]
    assert on["passed"] and off["passed"]
    assert "check-inputs (overlapped)" in on["timings_s"] and "check-inputs" in off["timings_s"]
    assert "check-inputs (overlapped)" not in off["timings_s"]
    assert [o["name"] for o in on["outputs"]] == [o["name"] for o in off["outputs"]] == ["logits", "features"]
    assert on["input_sets"] == off["input_sets"]
    # the source ran on one thread in the child: its outputs may differ in the last bits, never beyond that
    compared = {mode: [(o["name"], o["shape"], o["max_abs_error"]) for h in r["hops"] for o in h["outputs"]]
                for mode, r in reports.items()}
    assert [c[:2] for c in compared["on"]] == [c[:2] for c in compared["off"]] and compared["on"]
    assert all(abs(a[2] - b[2]) < 1e-5 for a, b in zip(compared["on"], compared["off"]))
    latency = {e["role"]: e for e in on["latency"]}
    assert latency["source"]["warmup"] == 1  # the worker had not run the model: one untimed call first


def test_the_source_error_is_reported_when_it_cannot_run(tmp_path: Path) -> None:
    """An input shape the model cannot take: the same one-line shape error and exit code as without the child."""
    src = tmp_path / "heads.pt2"
    _named_outputs_program(src)
    codes, lines = {}, {}
    for mode in ("on", "off"):
        done = subprocess.run([sys.executable, "-c", _CLI, mode, str(src), "-o", str(tmp_path / f"{mode}.tflite"),
                               "--input-shape", "2x5x8x8"], capture_output=True, text=True, timeout=600)
        codes[mode], lines[mode] = done.returncode, done.stderr.strip().splitlines()[-1:]
    assert codes["on"] == codes["off"] == 7, (codes, lines)
    assert lines["on"] == lines["off"] and "does not run on inputs of shape" in lines["on"][0], lines
    assert not list(tmp_path.glob("*.tflite"))


def test_a_stalled_child_is_stopped_and_a_busy_one_is_not(monkeypatch) -> None:  # noqa: ANN001
    """``collect``: a child with no CPU time for ``STALL_S`` is stopped (None: the worker runs the sets itself);
    a child that computes longer than that is waited for."""
    import time

    from converter import forked
    from converter.conversion import beside_export

    import signal

    monkeypatch.setattr(beside_export, "STALL_S", 1.5)
    t0 = time.monotonic()

    def stuck_in_c() -> None:  # a SIGTERM handler that only records, as the conversion's own does
        signal.signal(signal.SIGTERM, lambda *_: None)
        time.sleep(60)

    stuck = forked.start(stuck_in_c)
    assert beside_export.collect(stuck) is None and time.monotonic() - t0 < 10

    def busy() -> int:
        end, n = time.monotonic() + 3.0, 0
        while time.monotonic() < end:
            n += 1
        return 7

    assert beside_export.collect(forked.start(busy)) == 7


def test_runs_before_the_export_happen_in_a_child_with_the_workers_threads() -> None:
    """``runs_before_export``: the work runs in another process, with the intra-op threads the worker had before
    ``prepare`` held it at one (the child starts its own OpenMP pool); its value and its errors come back."""
    import os

    import torch

    from converter.conversion import beside_export
    from converter.errors import ShapeError

    def where() -> tuple[int, int]:
        return os.getpid(), torch.get_num_threads()

    pid, threads = beside_export.runs_before_export(where, 3)
    assert pid != os.getpid() and threads == 3

    def fails() -> None:
        raise ShapeError("the model does not run on inputs of shape [[2, 5, 8, 8]]")

    with pytest.raises(ShapeError, match="does not run on inputs"):
        beside_export.runs_before_export(fails, 1)
