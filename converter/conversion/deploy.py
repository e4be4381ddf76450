"""PyTorch deployment artifacts from a module: ``torch.export`` once, then an AOTInductor package (``aoti``) or an
ExecuTorch program (``executorch``); verified by ``converter.parity.isolated.deploy_runner`` in a fresh process.

Every route that reaches a PyTorch module (the ``onnx`` route from Keras/SavedModel/ONNX, ``torch-export`` from a
PyTorch source) writes its deployment target here, so the two formats exist once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from converter.to_torch.artifacts import SavedArtifact, export_program

ROUTE_STEP = {"aoti": "AOTInductor package (aoti_compile_and_package)",
              "executorch": "ExecuTorch .pte (to_edge_transform_and_lower, XNNPACK)"}


def require(target: str) -> None:
    """Fail in one line before any work when the target's toolchain is missing."""
    if target == "executorch":
        from converter.adapters import executorch

        executorch.require()
    elif target == "aoti":
        from converter.adapters import aoti
        from converter.errors import UnsupportedError

        if aoti.compiler() is None:
            raise UnsupportedError("--to aoti compiles C++ and needs a compiler: install g++ (or clang++) or set CXX")


def save(module_or_program: Any, example: Sequence[Any], path: Path, dynamic_batch: bool,
         target: str) -> SavedArtifact:
    """Export (unless given an ``ExportedProgram``) and write the ``target`` artifact at ``path``."""
    import torch

    if isinstance(module_or_program, torch.export.ExportedProgram):
        program, dynamic, notes = module_or_program, dynamic_batch, ()
    else:
        program, dynamic, notes = export_program(module_or_program, example, dynamic_batch)
    if target == "aoti":
        from converter.adapters import aoti

        written = aoti.compile_package(program, path)
    else:
        from converter.adapters import executorch

        lowered = executorch.lower(program, path)
        written = lowered.notes
        planned = lowered.max_input_shapes[0][0] if lowered.max_input_shapes and lowered.max_input_shapes[0] else 0
        if dynamic and planned <= int(example[0].shape[0]):
            # ExecuTorch memory-plans every tensor; its lowering may bound the batch at the example's size
            dynamic = False
            written = (*written, f"ExecuTorch planned memory for a fixed batch of {planned}: verified at that batch")
    return SavedArtifact(path, dynamic, (*notes, *written))
