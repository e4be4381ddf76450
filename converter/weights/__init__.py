"""Per-layer-type weight transfer PyTorch -> Keras, by attribute path (never by order of creation).

Heavy frameworks are imported inside the functions: importing this package is cheap.
"""
from __future__ import annotations

from converter.weights.errors import WeightMappingError
from converter.weights.transfer import TransferReport, transfer_weights
from converter.weights.trace import flatten_inputs

__all__ = ["transfer_weights", "TransferReport", "flatten_inputs", "WeightMappingError"]
