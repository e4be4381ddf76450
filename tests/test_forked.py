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
