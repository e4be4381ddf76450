"""Keras / SavedModel / ONNX -> PyTorch (``.pt2`` ExportedProgram, TorchScript ``.pt``), verified hop by hop."""
from __future__ import annotations

from converter.to_torch.pipeline import TORCH_TARGETS, convert_to_torch, is_torch_target

__all__ = ["TORCH_TARGETS", "convert_to_torch", "is_torch_target"]
