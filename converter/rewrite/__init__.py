"""Rewrite model source between PyTorch and Keras (``RewriteOptions(to="keras" | "torch")``) with libcst rules, and
verify the rewrite numerically.

Importing this package imports libcst only; torch/TensorFlow/Keras are imported by ``verify`` when asked.
"""
from __future__ import annotations

from converter.rewrite.engine import rewrite_source
from converter.rewrite.options import DEFAULT_LAYOUT, LAYOUTS, RewriteOptions, RewriteResult, Todo

__all__ = ["rewrite_source", "RewriteOptions", "RewriteResult", "Todo", "DEFAULT_LAYOUT", "LAYOUTS"]
