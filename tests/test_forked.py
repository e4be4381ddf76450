"""converter.forked: a worker's result or exception comes back, and an interrupted parent stops its worker
instead of waiting for it."""
from __future__ import annotations

import os
import signal
import time

import pytest

from converter import forked
from converter.errors import ShapeError


def test_value_and_exception_come_back() -> None:
    assert forked.start(lambda: {"a": [1, 2]}).result() == {"a": [1, 2]}

    def fail() -> None:
        raise ShapeError("does not fit")

    with pytest.raises(ShapeError, match="does not fit") as info:
        forked.start(fail).result()
    assert any("[worker] Traceback" in note for note in getattr(info.value, "__notes__", []))


def test_arrays_come_back_whole_and_writable() -> None:
    """Arrays cross as pickle buffers (no copy of the whole result on either side): contiguous, Fortran-ordered,
    strided and empty ones come back equal, with their dtypes, and writable like any array the caller made."""
    import numpy as np

    def arrays() -> dict[str, object]:
        rng = np.random.default_rng(0)
        big = rng.standard_normal((3, 224, 224)).astype(np.float32)
        return {"big": big, "fortran": np.asfortranarray(rng.standard_normal((5, 7))), "strided": big[:, ::3, 1],
                "ints": np.arange(10, dtype=np.int64), "empty": np.zeros((0, 4), np.float16), "label": "x"}

    got, want = forked.start(arrays).result(), arrays()
    assert got.keys() == want.keys() and got["label"] == "x"
    for key in ("big", "fortran", "strided", "ints", "empty"):
        assert got[key].dtype == want[key].dtype and np.array_equal(got[key], want[key]), key
    got["big"][0, 0, 0] = 1.0


def test_a_result_that_does_not_pickle_is_reported() -> None:
    from converter.errors import CrossportError

    with pytest.raises(CrossportError, match="could not be passed back"):
        forked.start(lambda: (lambda: None)).result()


def test_interrupted_parent_kills_the_worker_at_once() -> None:
    worker = forked.start(lambda: time.sleep(60))

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    t0 = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            worker.result()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ProcessLookupError):  # reaped, not left running or as a zombie
        os.kill(worker.pid, 0)


def test_a_worker_killed_by_a_signal_is_reported() -> None:
    worker = forked.start(lambda: time.sleep(60))
    os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(forked.WorkerDied, match="signal 9"):
        worker.result()


def test_the_cpu_only_worker_reads_a_pt2_without_triton(tmp_path) -> None:  # noqa: ANN001
    """``frameworks.torch_on_cpu_only`` (the conversion's worker): torch._dynamo, imported by the ``.pt2`` reader,
    no longer imports triton, and the program still reads and runs; in a process that already imported torch's
    compiler stack nothing changes. Fresh processes: the import happens once per process."""
    import subprocess
    import sys

    code = """
import sys
from pathlib import Path
from converter.frameworks import torch_on_cpu_only
if sys.argv[1] == "late":
    import torch._dynamo
torch_on_cpu_only()
import torch
from converter.adapters.pt2_load import load_exported_program
path = Path(sys.argv[2])
if not path.exists():
    torch.export.save(torch.export.export(torch.nn.Linear(3, 2), (torch.randn(2, 3),)), str(path))
ep, _ = load_exported_program(path)
print(tuple(ep.module()(torch.ones(2, 3)).shape), sys.modules.get("triton") is None)
"""
    path = tmp_path / "m.pt2"
    lines = {}
    for mode in ("early", "late"):
        done = subprocess.run([sys.executable, "-c", code, mode, str(path)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        lines[mode] = done.stdout.split("\n")[-2]
    assert lines["early"] == "(2, 2) True"
    import importlib.util

    if importlib.util.find_spec("triton") is not None:  # installed: imported as usual when dynamo came first
        assert lines["late"] == "(2, 2) False"
