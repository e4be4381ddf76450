"""Model files as users have them (issue #14): one row per kind of file, each converted with the real CLI and the
result compared with the source *outside* crossport (the source run by torch / Keras directly, the converted file
opened by its own runtime). Prints a markdown table: the command, the exit code, the max abs error.

    .venv/bin/python benchmarks/sources.py [--only ROW,ROW] [--keep DIR]

Rows that need files made on a CUDA machine read ``../shared/fixtures/gpu_origin`` (see its README).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
GPU = REPO.parent / "shared" / "fixtures" / "gpu_origin"
SEED = 7


@dataclass(frozen=True)
class Row:
    name: str
    run: Callable[[Path], tuple[list[str], float]]  # workdir -> (crossport command, max abs error)


def _crossport(args: list[str], cwd: Path) -> list[str]:
    cmd = [sys.executable, "-c", "from converter.cli import main; main()", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1] if proc.stderr else ''}")
    return ["crossport", *args]


def _image(shape: tuple[int, ...] = (2, 3, 224, 224)) -> np.ndarray:
    return np.random.default_rng(SEED).standard_normal(shape).astype(np.float32)


def _keras_out(path: Path, x_nchw: np.ndarray, backend: str = "tensorflow") -> np.ndarray:
    """Run a .keras file in a fresh process under ``backend`` (NHWC input), return its output."""
    src = (f"import os, sys, numpy as np\nos.environ['KERAS_BACKEND'] = {backend!r}\nimport keras\n"
           f"m = keras.models.load_model({str(path)!r})\nx = np.load(sys.argv[1])\n"
           "y = keras.ops.convert_to_numpy(m(x.transpose(0, 2, 3, 1)))\nnp.save(sys.argv[2], y)\n")
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x_nchw)
        proc = subprocess.run([sys.executable, "-c", src, f"{tmp}/x.npy", f"{tmp}/y.npy"], capture_output=True,
                              text=True, timeout=900, env={**os.environ, "KERAS_BACKEND": backend})
        if proc.returncode != 0:
            raise RuntimeError(f"{backend}: {proc.stderr.strip().splitlines()[-1]}")
        return np.load(f"{tmp}/y.npy")


def _torch_ref(model, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    import torch

    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def cuda_pt2(work: Path) -> tuple[list[str], float]:
    import torch
    import torchvision
    import zipfile

    src = GPU / "mobilenet_v3_small_cuda.pt2"
    cmd = _crossport(["convert", str(src), "-o", str(work / "mnv3.keras")], work)
    ref = torchvision.models.mobilenet_v3_small()
    state = ref.state_dict()
    with zipfile.ZipFile(src) as zf:  # the archive's raw weight storages, read without torch.export
        config = next(n for n in zf.namelist() if n.endswith("model_weights_config.json"))
        for fqn, entry in json.loads(zf.read(config))["config"].items():
            if fqn in state:
                v = state[fqn]
                raw = zf.read(config.rsplit("/", 1)[0] + "/" + entry["path_name"])
                state[fqn] = torch.frombuffer(bytearray(raw), dtype=v.dtype)[: v.numel()].reshape(v.shape)
    ref.load_state_dict(state)
    x = _image()
    return cmd, float(np.abs(_keras_out(work / "mnv3.keras", x) - _torch_ref(ref, x)).max())


def cuda_checkpoint(work: Path) -> tuple[list[str], float]:
    import torch
    import torchvision

    src = GPU / "squeezenet1_1_cuda_checkpoint.pt"
    cmd = _crossport(["convert", str(src), "--model-class", "torchvision.models:squeezenet1_1", "--input-shape",
                      "1x3x224x224", "-o", str(work / "sq.keras")], work)
    ref = torchvision.models.squeezenet1_1()
    ref.load_state_dict(torch.load(src, map_location="cpu", weights_only=True)["model_state_dict"])
    x = _image()
    return cmd, float(np.abs(_keras_out(work / "sq.keras", x) - _torch_ref(ref, x)).max())


def _resnet18():  # noqa: ANN202
    import torch
    import torchvision

    torch.manual_seed(SEED)
    return torchvision.models.resnet18().eval()


def _checkpoint_row(filename: str, save: Callable[[object, Path], None]) -> Callable[[Path], tuple[list[str], float]]:
    """ResNet-18 weights saved by ``save`` as ``filename``, converted with ``--model-class``."""

    def run(work: Path) -> tuple[list[str], float]:
        model = _resnet18()
        save(model, work / filename)
        cmd = _crossport(["convert", str(work / filename), "--model-class", "torchvision.models:resnet18",
                          "--input-shape", "1x3x224x224", "-o", str(work / "r18.keras")], work)
        x = _image()
        return cmd, float(np.abs(_keras_out(work / "r18.keras", x) - _torch_ref(model, x)).max())

    return run


def _save_dataparallel(model, path: Path) -> None:  # noqa: ANN001
    import torch

    torch.save(torch.nn.DataParallel(model).state_dict(), path)  # every key prefixed "module."


def _save_safetensors(model, path: Path) -> None:  # noqa: ANN001
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def torchscript(work: Path) -> tuple[list[str], float]:
    import torch

    model = _resnet18()
    torch.jit.trace(model, torch.randn(1, 3, 224, 224)).save(str(work / "traced.pt"))
    cmd = _crossport(["convert", str(work / "traced.pt"), "--input-shape", "1x3x224x224", "-o",
                      str(work / "ts.keras")], work)
    x = _image()
    return cmd, float(np.abs(_keras_out(work / "ts.keras", x) - _torch_ref(model, x)).max())


def _keras_backend_row(backend: str) -> Callable[[Path], tuple[list[str], float]]:
    def run(work: Path) -> tuple[list[str], float]:
        import torch

        model = _resnet18()
        ep = torch.export.export(model, (torch.randn(2, 3, 224, 224),),
                                 dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
        torch.export.save(ep, str(work / "r18.pt2"))
        cmd = _crossport(["convert", str(work / "r18.pt2"), "-o", str(work / "r18.keras")], work)
        x = _image()
        return ([*cmd, "&&", f"KERAS_BACKEND={backend}", "python", "-c", "keras.models.load_model(...)"],
                float(np.abs(_keras_out(work / "r18.keras", x, backend) - _torch_ref(model, x)).max()))

    return run


def _keras_file_row(kind: str) -> Callable[[Path], tuple[list[str], float]]:
    """A Keras file made the way the user made it (under the torch backend, or the legacy .h5), -> .pt2."""

    def run(work: Path) -> tuple[list[str], float]:
        name = "torch_backend.keras" if kind == "torch" else "legacy.h5"
        backend = "torch" if kind == "torch" else "tensorflow"
        make = (f"import os; os.environ['KERAS_BACKEND'] = {backend!r}\nimport keras, numpy as np\n"
                "keras.utils.set_random_seed(3)\n"
                "m = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(8, 3, activation='relu'),"
                " keras.layers.BatchNormalization(), keras.layers.MaxPooling2D(), keras.layers.Conv2D(16, 3),"
                " keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)])\n"
                f"m.save({str(work / name)!r})\n"
                f"x = np.random.default_rng({SEED}).standard_normal((2, 32, 32, 3)).astype('float32')\n"
                f"np.save({str(work / 'x.npy')!r}, x); np.save({str(work / 'y.npy')!r},"
                " keras.ops.convert_to_numpy(m(x)))\n")
        proc = subprocess.run([sys.executable, "-c", make], capture_output=True, text=True, timeout=600,
                              env={**os.environ, "KERAS_BACKEND": backend})
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.strip().splitlines()[-1])
        out = work / f"{kind}.pt2"
        cmd = _crossport(["convert", str(work / name), "-o", str(out)], work)
        import torch

        program = torch.export.load(str(out)).module()
        with torch.no_grad():
            got = program(torch.from_numpy(np.load(work / "x.npy"))).numpy()
        return cmd, float(np.abs(got - np.load(work / "y.npy")).max())

    return run


ROWS = [Row("cuda_pt2", cuda_pt2), Row("cuda_checkpoint", cuda_checkpoint),
        Row("dataparallel", _checkpoint_row("dp.pth", _save_dataparallel)),
        Row("safetensors", _checkpoint_row("model.safetensors", _save_safetensors)),
        Row("torchscript_cpu_traced", torchscript),
        Row("keras_on_torch_backend", _keras_backend_row("torch")), Row("keras_on_jax", _keras_backend_row("jax")),
        Row("keras_saved_under_torch_to_pt2", _keras_file_row("torch")),
        Row("legacy_h5_to_pt2", _keras_file_row("h5"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="")
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    only = {s for s in args.only.split(",") if s}
    print("| row | command | result | max abs error vs source | time (s) |\n|---|---|---|---|---|")
    failed = 0
    for row in ROWS:
        if only and row.name not in only:
            continue
        work = Path(tempfile.mkdtemp(prefix=f"sources-{row.name}-", dir=args.keep))
        start = time.perf_counter()
        try:
            cmd, err = row.run(work)
            result, shown = ("ok", f"{err:.2e}")
        except Exception as exc:  # noqa: BLE001 - one row's failure is that row's result
            cmd, result, shown = [], f"FAILED: {exc}"[:200], "-"
            failed += 1
        text = " ".join(shlex.quote(c) if c not in ("&&",) else c for c in cmd).replace(str(work) + "/", "")
        print(f"| {row.name} | `{text}` | {result} | {shown} | {time.perf_counter() - start:.0f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
