"""Reading a ``.pt2`` and writing the intermediate ONNX: each of crossport's shortcuts against the plain path, in
one process, alternated, on the bench zoo's models (issue 19).

- ``read``: ``converter.adapters.pt2_load.load_exported_program`` with its cached symbolic-size parses, and with
  them switched off (the deserializer's own ``sympy`` module), after one untimed read that pays the imports.
- ``save``: ``converter.adapters.torch_onnx.export`` with folded weight transposes written block by block, as a
  whole contiguous copy first, and as they come (``ndarray.tofile`` on the transposed view), into ``/dev/shm``;
  the save step itself is timed (onnxscript's ``save_model_with_external_data``).

    .venv/bin/python benchmarks/io_paths.py                               # vit_b_16, convnext_tiny, resnet18
    .venv/bin/python benchmarks/io_paths.py --models vit_b_16 --rounds 3
"""
from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


@contextlib.contextmanager
def _plain_sympy() -> Iterator[None]:
    """``pt2_load`` without its parse cache: the shortcut sees a replaced module and steps aside."""
    import types

    import sympy
    from torch._export.serde import serialize

    serialize.sympy = types.ModuleType("sympy")
    serialize.sympy.__dict__.update(vars(sympy))
    try:
        yield
    finally:
        serialize.sympy = sympy


def time_reads(path: Path, rounds: int) -> dict[str, list[float]]:
    from converter.adapters.pt2_load import load_exported_program

    load_exported_program(path)
    out: dict[str, list[float]] = {"cached parses": [], "plain": []}
    for _ in range(rounds):
        for mode in out:
            t0 = time.perf_counter()
            with _plain_sympy() if mode == "plain" else contextlib.nullcontext():
                load_exported_program(path)
            out[mode].append(time.perf_counter() - t0)
    return out


def _whole_copy(model: Any) -> None:
    import numpy as np
    import onnx_ir as ir

    for value in model.graph.initializers.values():
        raw = getattr(value.const_value, "raw", None)
        if isinstance(value.const_value, ir.Tensor) and isinstance(raw, np.ndarray) and not raw.flags.c_contiguous:
            value.const_value = ir.Tensor(np.ascontiguousarray(raw), dtype=value.const_value.dtype,
                                          name=value.const_value.name)


def time_saves(path: Path, input_shape: tuple[int, ...], rounds: int) -> dict[str, list[float]]:
    import onnxscript._framework_apis.torch_2_5 as apis
    import torch
    import torch.onnx._internal.exporter._onnx_program as onnx_program

    from converter.adapters import torch_onnx
    from converter.adapters.pt2_load import load_exported_program

    program, _ = load_exported_program(path)
    example = (torch.randn(2, *input_shape),)
    modes: dict[str, Callable[[Any], None]] = {"blocks": torch_onnx._transposed_weights_written_in_blocks,
                                               "whole copy": _whole_copy, "as they come": lambda model: None}
    real_prepare, real_save = torch_onnx._transposed_weights_written_in_blocks, apis.save_model_with_external_data
    seconds: list[float] = []

    def timed_save(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_save(*args, **kwargs)
        finally:
            seconds.append(time.perf_counter() - t0)

    out: dict[str, list[float]] = {mode: [] for mode in modes}
    onnx_program.onnxscript_apis.save_model_with_external_data = timed_save
    try:
        for k in range(rounds + 1):  # the first round pays the exporter's one-off costs: not reported
            for mode, prepare in modes.items():
                prepared: list[float] = []

                def prepare_timed(model: Any, prepare: Callable[[Any], None] = prepare) -> None:
                    t0 = time.perf_counter()
                    prepare(model)
                    prepared.append(time.perf_counter() - t0)

                torch_onnx._transposed_weights_written_in_blocks = prepare_timed
                work = Path(tempfile.mkdtemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
                try:
                    seconds.clear()
                    torch_onnx.export(program, example, work / "m.onnx", n_outputs=1, external_data=True)
                    if k:
                        out[mode].append(sum(prepared) + sum(seconds))
                finally:
                    shutil.rmtree(work, ignore_errors=True)
    finally:
        torch_onnx._transposed_weights_written_in_blocks = real_prepare
        onnx_program.onnxscript_apis.save_model_with_external_data = real_save
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="vit_b_16,convnext_tiny,resnet18")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from benchmarks.zoo import ALL_MODELS
    from benchmarks.zoo_models import save_source

    work = Path(tempfile.mkdtemp(prefix="crossport-io-"))
    try:
        for name in args.models.split(","):
            zoo = ALL_MODELS[name]
            path, _ = save_source(zoo, work)
            for what, result in (("read .pt2", time_reads(path, args.rounds)),
                                 ("prepare + save ONNX", time_saves(path, tuple(zoo.input_shape), args.rounds))):
                cells = "; ".join(f"{mode} " + " / ".join(f"{s:.2f}" for s in values)
                                  for mode, values in result.items())
                print(f"{name:16s} {what:20s} {cells} s", flush=True)
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
