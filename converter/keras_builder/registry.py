"""ONNX op type -> handler that emits Keras for one node (one module per op family registers here)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import onnx

    from converter.keras_builder.context import BuildContext, KT

Handler = Callable[["BuildContext", "onnx.NodeProto"], "list[KT]"]

HANDLERS: dict[str, Handler] = {}


def handles(*op_types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for op in op_types:
            HANDLERS[op] = fn
        return fn

    return register


def load_all() -> dict[str, Handler]:
    """Import every op module so their handlers register; returns the table."""
    from converter.keras_builder import ops_conv, ops_elementwise, ops_linear  # noqa: F401
    from converter.keras_builder import ops_norm, ops_recurrent, ops_shape  # noqa: F401

    return HANDLERS
