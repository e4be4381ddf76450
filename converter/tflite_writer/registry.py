"""Keras operation class name -> handler that emits the TFLite operators for one graph node (one module per op
family registers here; :mod:`converter.tflite_writer.walk` imports them all)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from converter.tflite_writer.context import WriteContext

Handler = Callable[["WriteContext", Any], None]

HANDLERS: dict[str, Handler] = {}


def handles(*class_names: str) -> Callable[[Handler], Handler]:
    """Register ``fn`` for Keras operations whose class is named ``class_names`` (layers and ``keras.ops``
    operations share one namespace: where they collide the handler reads the node's arguments either way)."""

    def register(fn: Handler) -> Handler:
        for name in class_names:
            HANDLERS[name] = fn
        return fn

    return register

