"""Ctrl-C and SIGTERM stop a conversion, even when they land inside a framework call.

A Python signal handler's ``KeyboardInterrupt`` raised while TensorFlow or onnxruntime is calling back into Python
comes out as the framework's own exception type, which a step that tolerates runtime errors (latency timing, an
optional check) then swallows: the conversion carried on and published. So the handler also records the signal,
and every pipeline step and every publish checks that record.
"""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Iterator

_pending = False


def _handler(signum: int, frame: object) -> None:
    global _pending
    _pending = True
    raise KeyboardInterrupt


def _quiet_unraisable(previous):  # noqa: ANN001, ANN202 - sys.unraisablehook's signature
    """A signal landing in a callback Python cannot raise from (a garbage-collector hook, a finalizer) printed
    "Exception ignored ... Traceback"; the flag already carries it, so say nothing for those."""
    def hook(unraisable) -> None:  # noqa: ANN001
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)
    return hook


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a signal arrived under ``trapping()`` and was swallowed since."""
    if _pending:
        raise KeyboardInterrupt


@contextmanager
def trapping() -> Iterator[None]:
    """SIGINT and SIGTERM both interrupt the body (work dir removed, exit 130); the previous handlers come back
    afterwards, so a host process that ran the command in-process (Click's runner, a notebook) keeps its own.
    Off the main thread signals cannot be set: the body runs without the handlers."""
    global _pending
    _pending = False
    try:
        previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:
        yield
        return
    unraisable = sys.unraisablehook
    sys.unraisablehook = _quiet_unraisable(unraisable)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = unraisable
        _pending = False
