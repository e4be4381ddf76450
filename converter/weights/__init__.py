"""Per-layer-type weight transfer PyTorch -> Keras, by attribute path (never by order of creation).

Heavy frameworks are imported inside the functions: importing this package is cheap.
"""
from __future__ import annotations

from converter.weights.errors import WeightMappingError
from converter.weights.from_state_dict import keras_flatten_inputs, load_state_dict_into_keras
from converter.weights.trace import flatten_inputs
from converter.weights.transfer import TransferReport, transfer_weights

__all__ = [
    "transfer_weights", "TransferReport", "flatten_inputs", "WeightMappingError", "load_state_dict_into_keras",
    "keras_flatten_inputs",
]
