"""Run one function in a forked child while the parent does other work, and get its result or exception back.

Why: a PyTorch -> TensorFlow conversion pays for importing TensorFlow/Keras (2-3 s on the 2-core CI machine) and
for the PyTorch side (loading the file, ``torch.onnx.export``: 5-8 s for ResNet-18). Neither releases the GIL for
long (a thread importing TensorFlow next to the export made the pair slower: 10-11 s vs 9.6-9.8 s sequential), but
two processes overlap them on two cores. ``fork`` rather than a fresh interpreter: the child already holds the
parsed options, the user's ``sys.path`` and the imports done so far, and nothing has to be re-described to it.

Forking is only safe before torch or TensorFlow start their thread pools, so ``can_fork`` refuses once either is
imported (a Python caller that already imported torch gets the sequential path). The child never returns into
the caller's stack: it sends ``("ok", value)`` or ``("err", exception)`` through a pipe and leaves with
``os._exit``, so the parent's ``atexit`` handlers, ``finally`` blocks and buffered output are not run twice. The
pickle crosses between two processes of this same command; it never reads a file.

A streaming worker (``start_streaming``) sends values as soon as it has them and goes on: the parent builds from
the exported ONNX while the child still runs the source on the verification inputs, and the child times the source
only when the parent says ``go`` -- when the parent is idle, so the two never share the cores while timing.
"""
from __future__ import annotations

import os
import pickle
import signal
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from converter.errors import CrossportError

_NOT_YET_IMPORTED = ("torch", "tensorflow", "keras", "jax")


class WorkerDied(CrossportError):
    """The forked worker ended without sending a result (killed by a signal, or out of memory)."""

    exit_code = 70
    kind = "internal error"


def can_fork() -> bool:
    """True when a fork is safe and wanted: POSIX, no framework thread pools yet, not disabled by
    ``CROSSPORT_NO_FORK=1``."""
    if not hasattr(os, "fork") or os.environ.get("CROSSPORT_NO_FORK", "") not in ("", "0"):
        return False
    return not any(name in sys.modules for name in _NOT_YET_IMPORTED)


_HEADER = 8  # bytes of each message's length prefix


def _write_message(fd: int, kind: str, payload: Any) -> None:
    try:
        data = pickle.dumps((kind, payload))
    except Exception as err:  # noqa: BLE001 - an exception or value that does not pickle
        data = pickle.dumps(("err", CrossportError(f"the PyTorch worker's result could not be passed back "
                                                   f"({type(err).__name__}: {err})")))
    view = memoryview(len(data).to_bytes(_HEADER, "little") + data)
    while view:
        view = view[os.write(fd, view):]


class Channel:
    """The child's side of a streaming worker (``start_streaming``): ``send`` hands the parent a value now and goes
    on working; ``wait`` blocks until the parent calls ``Worker.go`` (False when the parent went away)."""

    def __init__(self, out_fd: int, control_fd: int) -> None:
        self._out = out_fd
        self._control = control_fd

    def send(self, value: Any) -> None:
        _write_message(self._out, "part", value)

    def wait(self) -> bool:
        try:
            return os.read(self._control, 1) != b""
        except OSError:
            return False


@dataclass(eq=False)
class Worker:
    """A started child. ``result()`` waits for its final value; a streaming child's earlier values come from
    ``receive()``, in the order it sent them."""

    pid: int
    fd: int
    control: int = -1  # write end of the parent -> child pipe (``go``); -1 for a plain worker
    _done: bool = False
    _finished: bool = False

    def receive(self) -> Any:
        """The child's next value -- a part it sent, or its final value (the child is then reaped); its exception
        is re-raised here (its traceback attached as a note)."""
        if self._done:
            raise WorkerDied("the PyTorch worker process was already stopped")
        try:
            header = self._read_exactly(_HEADER)
            data = self._read_exactly(int.from_bytes(header, "little")) if len(header) == _HEADER else b""
        except BaseException:  # interrupted while waiting: stop the worker now rather than wait for it
            self.kill()
            raise
        if len(header) < _HEADER or not data:
            self._died()
        kind, payload = pickle.loads(data)  # noqa: S301 - written by our own child, never a file
        if kind == "part":
            return payload
        self._finished = True
        self.close()
        if kind == "ok":
            return payload
        raise payload

    def result(self) -> Any:
        """The child's final value (parts it sent before are skipped)."""
        while True:
            finished = self._finished
            value = self.receive()
            if self._finished and not finished:
                return value

    def go(self) -> None:
        """Let a streaming child past its ``Channel.wait``."""
        try:
            os.write(self.control, b"g")
        except OSError:  # the child is gone; the next ``receive`` says why
            pass

    def _read_exactly(self, n: int) -> bytes:
        chunks, left = [], n
        while left:
            chunk = os.read(self.fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _died(self) -> None:
        status = self.close()
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGINT:
                raise KeyboardInterrupt
            raise WorkerDied(f"the PyTorch worker process was killed by signal {sig} "
                             f"({'out of memory?' if sig == signal.SIGKILL else signal.Signals(sig).name})")
        raise WorkerDied(f"the PyTorch worker process exited with status {os.waitstatus_to_exitcode(status)} "
                         "without a result")

    def close(self) -> int:
        """Done with a finished child: close the pipes and reap it (its wait status)."""
        for fd in (self.fd, self.control):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd = self.control = -1
        return self._reap()

    def kill(self) -> None:
        """Stop the child (the parent was interrupted, failed, or no longer needs it) and reap it."""
        if self._done:
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.close()

    def _reap(self) -> int:
        if self._done:
            return 0
        self._done = True
        _LIVE.pop(self, None)
        _, status = os.waitpid(self.pid, 0)
        return status


_LIVE: dict[Worker, object] = {}  # running workers -> what they work for (``start_streaming``'s ``owner``)


def stop_all(owner: object = None) -> None:
    """Kill the workers started for ``owner`` (all, when None) that are still running: their conversion ended
    without asking a streaming worker for the rest -- an error, or nothing more was needed from it."""
    for worker, of in list(_LIVE.items()):
        if owner is None or of == owner:
            worker.kill()


def start(fn: Callable[[], Any]) -> Worker:
    """Fork; the child runs ``fn()`` and reports its value. Only call when ``can_fork()``."""
    return _fork(lambda _channel: fn(), control=False, owner=None)


def start_streaming(fn: Callable[[Channel], Any], owner: object = None) -> Worker:
    """Fork; the child runs ``fn(channel)``: values it ``send``s arrive through ``Worker.receive`` while it goes on,
    and it can wait on the parent's ``go``. ``stop_all(owner)`` kills it if it is still running then (the
    conversion's work dir, ``converter.conversion.job.workdir``). Only call when ``can_fork()``."""
    return _fork(fn, control=True, owner=owner)


def _fork(fn: Callable[[Channel], Any], control: bool, owner: object) -> Worker:
    read_fd, write_fd = os.pipe()
    ctl_read, ctl_write = os.pipe() if control else (-1, -1)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        if ctl_write >= 0:
            os.close(ctl_write)
        code = 0
        try:
            message: tuple[str, Any] = ("ok", fn(Channel(write_fd, ctl_read)))
        except BaseException as err:  # noqa: BLE001 - every outcome goes back to the parent
            err.add_note("".join(traceback.format_exception(err)).rstrip()
                         .replace("\n", "\n  [worker] ").join(("  [worker] ", "")))
            message = ("err", err)
        try:
            _write_message(write_fd, *message)
        except BaseException:  # noqa: BLE001 - the parent went away
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    if ctl_read >= 0:
        os.close(ctl_read)
    worker = Worker(pid, read_fd, ctl_write)
    _LIVE[worker] = owner
    return worker
