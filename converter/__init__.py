"""crossport: move neural networks between PyTorch and TensorFlow/Keras, and prove each move was faithful.

The public API. Importing this package is cheap: heavy frameworks load only when a function runs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from converter.errors import CrossportError
from converter.frameworks import prepare_process

prepare_process()

__all__ = ["convert", "ConvertOptions", "ConversionResult", "CrossportError", "rewrite_source", "RewriteOptions",
           "transfer_weights"]

if TYPE_CHECKING:
    from converter.conversion import ConversionResult, ConvertOptions, convert
    from converter.rewrite import RewriteOptions, rewrite_source
    from converter.weights import transfer_weights


def __getattr__(name: str) -> Any:
    if name in ("convert", "ConvertOptions", "ConversionResult"):
        from converter import conversion

        return getattr(conversion, name)
    if name in ("rewrite_source", "RewriteOptions"):
        from converter import rewrite

        return getattr(rewrite, name)
    if name == "transfer_weights":
        from converter.weights import transfer_weights

        return transfer_weights
    raise AttributeError(f"module 'converter' has no attribute {name!r}")
