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


@dataclass
class Worker:
    """A started child; ``result()`` waits for it."""

    pid: int
    fd: int
    _done: bool = False

    def result(self) -> Any:
        """The child's return value, or its exception re-raised here (its traceback attached as a note)."""
        chunks = []
        try:
            with os.fdopen(self.fd, "rb") as pipe:
                while True:
                    chunk = pipe.read(1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except BaseException:  # interrupted while waiting: stop the worker now rather than wait for it
            self.kill()
            raise
        status = self._reap()
        if not chunks:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                if sig == signal.SIGINT:
                    raise KeyboardInterrupt
                raise WorkerDied(f"the PyTorch worker process was killed by signal {sig} "
                                 f"({'out of memory?' if sig == signal.SIGKILL else signal.Signals(sig).name})")
            raise WorkerDied(f"the PyTorch worker process exited with status {os.waitstatus_to_exitcode(status)} "
                             "without a result")
        kind, payload = pickle.loads(b"".join(chunks))  # noqa: S301 - written by our own child, never a file
        if kind == "ok":
            return payload
        raise payload

    def kill(self, sig: int = signal.SIGTERM) -> None:
        """Stop the child (the parent was interrupted or failed) and reap it. ``SIGKILL`` for a child that may be
        stuck outside Python, where the SIGTERM handler it inherited would never run."""
        if self._done:
            return
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
        self._reap()

    def _reap(self) -> int:
        if self._done:
            return 0
        self._done = True
        _, status = os.waitpid(self.pid, 0)
        return status


def start(fn: Callable[[], Any]) -> Worker:
    """Fork; the child runs ``fn()`` and reports. Only call when ``can_fork()``."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        code = 0
        try:
            message: tuple[str, Any] = ("ok", fn())
        except BaseException as err:  # noqa: BLE001 - every outcome goes back to the parent
            err.add_note("".join(traceback.format_exception(err)).rstrip()
                         .replace("\n", "\n  [worker] ").join(("  [worker] ", "")))
            message = ("err", err)
        try:
            data = pickle.dumps(message)
        except Exception as err:  # noqa: BLE001 - an exception or value that does not pickle
            data = pickle.dumps(("err", CrossportError(f"the PyTorch worker's result could not be passed back "
                                                       f"({type(err).__name__}: {err})")))
        try:
            with os.fdopen(write_fd, "wb") as pipe:
                pipe.write(data)
        except BaseException:  # noqa: BLE001 - the parent went away
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    return Worker(pid, read_fd)
