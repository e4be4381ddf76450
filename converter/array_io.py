"""An array's bytes written to a file in C order without a contiguous copy of the whole.

Weights often arrive as transposed views (a folded ``Transpose`` in the exporter, a Keras kernel laid out for
TFLite). ``ndarray.tofile`` walks such a view element by element, and a contiguous copy first touches as many fresh
pages as the weight has bytes; blocks of rows through one bounded buffer do neither. Used by the ONNX save
(``adapters.torch_onnx``) and the ``.tflite`` writer (``tflite_writer.graph``).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def write_c_order(file: Any, array: np.ndarray, block_bytes: int) -> None:
    """``array``'s bytes in C order to ``file`` (anything with ``write``): as they are when contiguous, else in
    contiguous blocks of rows of at most ``block_bytes`` (one row when a row is larger)."""
    if array.flags.c_contiguous:
        file.write(memoryview(array.reshape(-1)).cast("B"))
        return
    if array.ndim == 0 or array.shape[0] <= 1:
        file.write(memoryview(np.ascontiguousarray(array).reshape(-1)).cast("B"))
        return
    rows = max(1, block_bytes // max(1, array[0].nbytes))
    for start in range(0, array.shape[0], rows):
        file.write(memoryview(np.ascontiguousarray(array[start:start + rows]).reshape(-1)).cast("B"))
