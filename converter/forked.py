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

The arrays in the result (the verification inputs and the source's outputs) cross as pickle protocol 5 buffers:
written from the child's own memory and read into one buffer each on this side, which the unpickled arrays use.
A ``pickle.dumps`` of the whole result and the parent's list of chunks plus their join were three more copies,
alive together at the conversion's peak (the child exits only after the parent has read everything).
"""
from __future__ import annotations

import os
import pickle
import signal
import struct
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
        try:
            with os.fdopen(self.fd, "rb") as pipe:
                message = _receive(pipe)
        except BaseException:  # interrupted while waiting: stop the worker now rather than wait for it
            self.kill()
            raise
        status = self._reap()
        if message is None:
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
                if sig == signal.SIGINT:
                    raise KeyboardInterrupt
                raise WorkerDied(f"the PyTorch worker process was killed by signal {sig} "
                                 f"({'out of memory?' if sig == signal.SIGKILL else signal.Signals(sig).name})")
            raise WorkerDied(f"the PyTorch worker process exited with status {os.waitstatus_to_exitcode(status)} "
                             "without a result")
        kind, payload = message
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
            framed = _frames(message)
        except Exception as err:  # noqa: BLE001 - an exception or value that does not pickle
            framed = _frames(("err", CrossportError(f"the PyTorch worker's result could not be passed back "
                                                    f"({type(err).__name__}: {err})")))
        try:
            with os.fdopen(write_fd, "wb", buffering=0) as pipe:
                for frame in framed:
                    _write_all(pipe, frame)
        except BaseException:  # noqa: BLE001 - the parent went away
            code = 1
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_fd)
    return Worker(pid, read_fd)


_HEADER = struct.Struct("<QQ")  # length of the pickle, number of out-of-band buffers; then one length per buffer


def _frames(message: Any) -> list[Any]:
    """The header, the pickle and each buffer as a view of the child's memory (nothing is copied here)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    views = [b.raw() for b in buffers]
    sizes = struct.pack(f"<{len(views)}Q", *(v.nbytes for v in views))
    return [_HEADER.pack(len(data), len(views)) + sizes, data, *views]


def _write_all(pipe: Any, view: Any) -> None:
    view = memoryview(view).cast("B")
    while view:
        view = view[pipe.write(view):]


def _receive(pipe: Any) -> Any:
    """The child's message, or None when it sent nothing or stopped part-way (it died: the caller reads its status)."""
    head = _read_exactly(pipe, _HEADER.size)
    if head is None:
        return None
    length, count = _HEADER.unpack(head)
    sizes = _read_exactly(pipe, 8 * count)
    data = _read_exactly(pipe, length)
    if sizes is None or data is None:
        return None
    buffers = [_read_exactly(pipe, n) for n in struct.unpack(f"<{count}Q", sizes)]
    if any(b is None for b in buffers):
        return None
    return pickle.loads(data, buffers=buffers)  # noqa: S301 - written by our own child, never a file


def _read_exactly(pipe: Any, n: int) -> bytearray | None:
    out = bytearray(n)
    view, got = memoryview(out), 0
    while got < n:
        read = pipe.readinto(view[got:])
        if not read:
            return None
        got += read
    return out
