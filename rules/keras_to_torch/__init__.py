"""Keras 3 -> PyTorch rules (a later issue)."""
