"""One peer conversion, run by a *peer's* interpreter (``benchmarks/peer_venvs.py``), as that tool's user runs it.

    PEER_PYTHON benchmarks/peer_runner.py TOOL MODEL OUTPUT RESULT_JSON

The model is the benchmark zoo's own (``benchmarks/zoo_models.build_torch``: torchvision architecture, seed 0, the
same calibrated weights as the ``.pt2`` crossport converts), input 1x3x224x224. Only torch, torchvision and the
peer are imported here (``benchmarks.zoo_models`` imports nothing heavy at module level), so this runs in a venv
without crossport. Phases are timed inside the process; the parent times the whole process and subtracts
``build_s`` (crossport reads a ready ``.pt2`` instead of building the model). Exit 0 and ``ok: true`` in the JSON
only when the output file was written; any exception is recorded as its one-line message.

- litert-torch: ``litert_torch.convert(module, (x,))`` then ``.export(path)``: a static batch 1, its normal use
  (with ``dynamic_shapes`` for the batch its conversion fails; issue 19). Its NCHW input is kept.
- nobuco: ``nobuco.pytorch_to_keras(module, args=[x])`` with its defaults (channel order TENSORFLOW: NHWC input;
  ``full_validation=True``, its per-operation check against PyTorch), then ``keras_model.save(path)``.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks.zoo_models, nothing else


def _litert_torch(module: Any, x: Any, output: Path, phases: dict[str, float]) -> None:
    t0 = time.perf_counter()
    import litert_torch

    phases["import_peer_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    edge = litert_torch.convert(module, (x,))
    phases["convert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    edge.export(str(output))
    phases["save_s"] = time.perf_counter() - t0


def _litert_torch_dynamic(module: Any, x: Any, output: Path, phases: dict[str, float]) -> None:
    """The check behind "static batch 1": the same call with a dynamic batch (traced with batch 2, since
    torch.export specializes a size-1 dimension), as crossport's ``.pt2`` sources have."""
    import torch

    t0 = time.perf_counter()
    import litert_torch

    phases["import_peer_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch = torch.export.Dim("batch", min=1, max=1024)
    edge = litert_torch.convert(module, (torch.cat([x, x]),), dynamic_shapes=({0: batch},))
    phases["convert_s"] = time.perf_counter() - t0
    edge.export(str(output))


def _nobuco(module: Any, x: Any, output: Path, phases: dict[str, float]) -> None:
    t0 = time.perf_counter()
    import nobuco

    phases["import_peer_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    keras_model = nobuco.pytorch_to_keras(module, args=[x])
    phases["convert_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    keras_model.save(str(output))
    phases["save_s"] = time.perf_counter() - t0


RUNNERS: dict[str, Callable[[Any, Any, Path, dict[str, float]], None]] = {
    "litert-torch": _litert_torch, "litert-torch-dynamic": _litert_torch_dynamic, "nobuco": _nobuco}


def main() -> int:
    tool, name, output, result = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    phases: dict[str, float] = {}
    out: dict[str, Any] = {"tool": tool, "model": name, "ok": False, "error": "", "phases_s": phases}
    try:
        t0 = time.perf_counter()
        import torch  # noqa: F401
        import torchvision  # noqa: F401 - timed with torch: both are imports a user of the peer pays

        phases["import_torch_s"] = time.perf_counter() - t0
        from benchmarks.zoo_models import ALL_MODELS, build_torch, torch_input

        t0 = time.perf_counter()
        zoo = ALL_MODELS[name]
        module, _ = build_torch(zoo)
        x = torch_input(zoo, 1, 0)
        out["build_s"] = phases["build_s"] = time.perf_counter() - t0
        RUNNERS[tool](module, x, output, phases)
        out["ok"] = output.exists()
        out["error"] = "" if out["ok"] else f"{tool} returned without writing {output.name}"
        out["artifact_bytes"] = _size(output) if output.exists() else None
    except BaseException as err:  # noqa: BLE001 - any failure of the peer is a result, recorded in one line
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        out["error"] = f"{type(err).__name__}: {lines[0][:300] if lines else ''}"
    result.write_text(json.dumps(out, indent=2))
    return 0 if out["ok"] else 1


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


if __name__ == "__main__":
    sys.exit(main())
