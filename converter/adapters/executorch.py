"""ExecuTorch: an ``ExportedProgram`` lowered to a ``.pte`` program for PyTorch's on-device runtime.

The only module that imports ``executorch``. It is the optional extra ``crossport[executorch]``: executorch 1.5.x
runs with torch 2.14 (it declares no torch pin; 1.4.x asks for torch>=2.13) but brings coremltools, torchao,
pandas and scikit-learn, which a TensorFlow-only user should not have to install.

Lowering: ``to_edge_transform_and_lower`` with the XNNPACK partitioner (the CPU backend ExecuTorch ships for
Linux, Android and iOS): the ops XNNPACK supports run delegated, the rest on ExecuTorch's portable kernels.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converter.errors import UnsupportedError

INSTALL_HINT = "pip install 'crossport[executorch]' (executorch 1.5.x, which runs with torch 2.14)"
RUNTIME = "executorch.runtime.Runtime"


@dataclass(frozen=True)
class Lowered:
    path: Path
    delegated: int  # XNNPACK subgraphs in the program
    max_input_shapes: tuple[tuple[int, ...], ...]  # the memory-planned (largest) shape of each input
    notes: tuple[str, ...]


def available() -> bool:
    try:
        return importlib.util.find_spec("executorch") is not None
    except (ImportError, ValueError):  # a blocked or half-installed package
        return False


def require() -> None:
    """One line saying how to get ExecuTorch, before any conversion work."""
    if not available():
        raise UnsupportedError(f"--to executorch needs the ExecuTorch package, which is not installed: {INSTALL_HINT}")


def lower(program: Any, path: Path) -> Lowered:
    """Lower ``program`` with the XNNPACK partitioner and write the ``.pte`` to ``path``."""
    require()
    from converter.frameworks import silenced_stderr

    try:
        with silenced_stderr():  # importing the partitioner pulls in torchao, which warns on stderr
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            delegated = _count_delegates(edge.exported_program().graph_module)
            blob = edge.to_executorch().buffer
    except Exception as err:  # noqa: BLE001 - exir raises many kinds of errors (unsupported ops, dynamic shapes)
        text = str(err).strip()
        line = text.splitlines()[0][:300] if text else type(err).__name__
        raise UnsupportedError(f"ExecuTorch could not lower the model: {type(err).__name__}: {line}") from err
    Path(path).write_bytes(blob)
    shapes = planned_input_shapes(path)
    notes = [f"ExecuTorch program: {delegated} XNNPACK-delegated subgraph(s); load it with {RUNTIME}"]
    if shapes and any(s for s in shapes):
        notes.append("ExecuTorch plans memory for the largest input shape: "
                     + ", ".join("x".join(map(str, s)) for s in shapes) + " (a larger batch is refused at run time)")
    return Lowered(Path(path), delegated, shapes, tuple(notes))


def planned_input_shapes(path: Path) -> tuple[tuple[int, ...], ...]:
    """Each input's memory-planned shape, as the runtime reads it from the program."""
    from executorch.runtime import Runtime

    from converter.frameworks import silenced_stderr

    with silenced_stderr():  # the runtime's cpuinfo probe prints to stderr
        method = Runtime.get().load_program(str(path)).load_method("forward")
    meta = method.metadata
    return tuple(tuple(int(d) for d in meta.input_tensor_meta(i).sizes()) for i in range(meta.num_inputs()))


def _count_delegates(graph_module: Any) -> int:
    return sum(1 for n in graph_module.graph.nodes if n.op == "get_attr" and str(n.target).startswith("lowered_module"))
