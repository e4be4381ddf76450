"""Per-layer-type weight transfer between PyTorch and Keras, by attribute path (never by order of creation).

Everything is imported on first use: importing the package must not pay for numpy (or anything heavier).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = [
    "transfer_weights", "TransferReport", "flatten_inputs", "WeightMappingError", "load_state_dict_into_keras",
    "keras_flatten_inputs",
]

_WHERE = {
    "transfer_weights": "converter.weights.transfer", "TransferReport": "converter.weights.transfer",
    "flatten_inputs": "converter.weights.trace", "WeightMappingError": "converter.weights.errors",
    "load_state_dict_into_keras": "converter.weights.from_state_dict",
    "keras_flatten_inputs": "converter.weights.from_state_dict",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'converter.weights' has no attribute {name!r}")
