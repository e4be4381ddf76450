"""Write and reload the PyTorch artifacts: ``.pt2`` (torch.export) and TorchScript (torch.jit.trace).

Both files hold ATen graphs and tensors only; loading them needs plain torch, never crossport or onnx2torch.
"""
from __future__ import annotations

import contextlib

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from converter.errors import UnsupportedError, described


@dataclass(frozen=True)
class SavedArtifact:
    path: Path
    dynamic_batch: bool
    notes: tuple[str, ...]


def _batch_dims(module: Any, example: Sequence[Any]) -> tuple[Any, ...]:
    """One shared symbolic batch for every input; a ``forward(*xs)`` takes them as one tuple argument."""
    import inspect

    import torch

    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    dims = tuple({0: batch} for _ in example)
    params = inspect.signature(module.forward).parameters.values()
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return (dims,)
    return dims


def save_pt2(module: Any, example: Sequence[Any], path: Path, dynamic_batch: bool) -> SavedArtifact:
    """``torch.export`` the module (dynamic batch when asked and possible) and save it."""
    import torch

    from converter.device_free import make_device_free

    ep, dynamic, notes = export_program(module, example, dynamic_batch)
    notes = (*notes, *make_device_free(ep))  # runs wherever .to() moves it
    torch.export.save(ep, str(path))
    return SavedArtifact(path, dynamic, notes)


def export_program(module: Any, example: Sequence[Any], dynamic_batch: bool) -> tuple[Any, bool, tuple[str, ...]]:
    """``torch.export`` with a symbolic batch when asked, else (or when that fails) at the example's batch."""
    from converter.to_torch.optimize import cancel_permute_pairs

    module.eval()
    with _torch_warnings_quiet():
        ep, dynamic, notes = _export_program(module, example, dynamic_batch, [])
    cancel_permute_pairs(ep)
    return ep, dynamic, notes


@contextlib.contextmanager
def _torch_warnings_quiet() -> Iterator[None]:
    """torch.export writes the whole traced graph to stderr (800+ lines for NASNetMobile: symbolic-shapes warnings
    and the graph with its guards) before raising a data-dependent-guard error; the error itself is what crossport
    reports, in one line. Under ``-v`` nothing is hidden (``silenced_stderr`` does not silence then)."""
    from converter.frameworks import silenced_stderr

    with silenced_stderr():
        yield


def _export_program(module: Any, example: Sequence[Any], dynamic_batch: bool,
                    notes: list[str]) -> tuple[Any, bool, tuple[str, ...]]:
    import torch

    ep = None
    if dynamic_batch:
        try:
            ep = torch.export.export(module, tuple(example), dynamic_shapes=_batch_dims(module, example))
        except Exception as err:  # noqa: BLE001 - torch.export raises many kinds of errors
            notes.append(f"torch.export could not keep the batch dynamic ({described(err)}); the .pt2 has a fixed "
                         f"batch of {example[0].shape[0]}")
    if ep is None:
        try:
            ep = torch.export.export(module, tuple(example))
        except Exception as err:  # noqa: BLE001
            raise UnsupportedError(f"torch.export failed on the converted model: {described(err)}") from err
    return ep, dynamic_batch and not notes, tuple(notes)


def save_torchscript(module: Any, example: Sequence[Any], path: Path) -> SavedArtifact:
    """Trace to TorchScript; tracing records one batch size's Python control flow, so we say the batch is
    traced at the example size (shape arithmetic on ``x.shape[0]`` stays symbolic where torch.jit records it)."""
    import warnings

    import torch

    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            traced = torch.jit.trace(module, tuple(example), check_trace=False)
        except Exception as err:  # noqa: BLE001
            raise UnsupportedError(f"torch.jit.trace failed on the converted model: {described(err)}") from err
        from converter.device_free import make_device_free

        notes = make_device_free(traced)  # runs wherever .to() moves it
        torch.jit.save(traced, str(path))
    return SavedArtifact(path, False, ("TorchScript is traced: verified at the sample batch sizes only", *notes))


def load_artifact(path: Path, target: str) -> Any:
    """Reload as a user would, with plain torch."""
    import torch

    if target == "pt2":
        return torch.export.load(str(path)).module()
    return torch.jit.load(str(path), map_location="cpu")

