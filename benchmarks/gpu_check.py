"""Do crossport's PyTorch files run on a GPU? Convert small Keras models to ``.pt2`` and TorchScript on the CPU,
load each with plain torch, run it on the CPU, move it with ``.to("cuda")``, run it again, compare.

    .venv/bin/python benchmarks/gpu_check.py [--keep DIR] [--device cuda:1]

Needs a CUDA machine (exit 2 without one). Prints one line per artifact with the max abs/rel error of the CUDA run
against the CPU run; exit 0 when every artifact ran on CUDA within atol 1e-4 + rtol 1e-4 (TF32 off), else 1.
Conversions run in a child process that sees no GPU (as on a user's CPU machine), so TensorFlow never touches
the GPU. About a minute on a 16-core machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# (Keras fixture, target, route): the keras-native route exports under Keras' torch backend (a .to(cpu) per tensor
# before crossport strips them); the onnx route goes through onnx2torch. Recurrent models make zeros for the state.
CASES = (("cnn", "pt2", "onnx"), ("cnn", "torchscript", "onnx"), ("lstm_text", "pt2", "keras-native"),
         ("lstm_text", "pt2", "onnx"), ("lstm_text", "torchscript", "onnx"), ("transformer_block", "pt2", "keras-native"))
ATOL = RTOL = 1e-4

_CONVERT = """
import sys
from pathlib import Path
from fixtures import keras_models
from converter import convert
d = Path(sys.argv[1])
for spec in sys.argv[2:]:
    name, to, route = spec.split(",")
    src = d / f"{name}.keras"
    if not src.exists():
        keras_models.save(name, src)
    out = d / f"{name}_{route}.{'pt2' if to == 'pt2' else 'pt'}"
    result = convert(str(src), output=str(out), to=to, route=route, manifest=False, force=True)
    print(spec, "converted" if result.passed else "FAILED verification", flush=True)
"""


def convert_all(workdir: Path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow",
           "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    specs = [",".join(c) for c in CASES]
    proc = subprocess.run([sys.executable, "-c", _CONVERT, str(workdir), *specs], env=env, cwd=ROOT,
                          capture_output=True, text=True)
    print(proc.stdout, end="")
    if proc.returncode != 0:
        print(proc.stderr[-4000:])
        raise SystemExit("gpu_check: converting the models failed (above)")


def _example(program: object, seed: int) -> list[object]:
    """Inputs from the ExportedProgram's signature: batch 2 where it is symbolic, token ids for integer inputs."""
    import torch

    g = torch.Generator().manual_seed(seed)
    names = set(program.graph_signature.user_inputs)
    feeds = []
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            val = node.meta["val"]
            shape = [d if isinstance(d, int) else 2 for d in val.shape]
            if val.dtype.is_floating_point:
                feeds.append(torch.randn(shape, generator=g, dtype=val.dtype))
            else:
                feeds.append(torch.randint(0, 10, shape, generator=g, dtype=val.dtype))
    return feeds


def check(path: Path, feeds: list[object], device: str) -> tuple[float, float]:
    """Max abs and rel error of the run on ``device`` against the CPU run of the file at ``path``."""
    import torch

    if path.suffix == ".pt2":
        module = torch.export.load(str(path)).module()
    else:
        module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        cpu = module(*feeds)
        module = module.to(device)
        gpu = module(*[f.to(device) for f in feeds])
    cpu = cpu if isinstance(cpu, (list, tuple)) else [cpu]
    gpu = gpu if isinstance(gpu, (list, tuple)) else [gpu]
    worst_abs = worst_rel = 0.0
    for a, b in zip(cpu, gpu):
        assert b.device.type == torch.device(device).type, b.device
        diff = (a - b.cpu()).abs()
        worst_abs = max(worst_abs, float(diff.max()))
        worst_rel = max(worst_rel, float((diff / a.abs().clamp_min(1e-6)).max()))
        if not torch.allclose(a, b.cpu(), atol=ATOL, rtol=RTOL):
            raise AssertionError(f"max abs error {float(diff.max()):.3e} beyond atol {ATOL} + rtol {RTOL}")
    return worst_abs, worst_rel


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="write the converted files here (kept) instead of a temporary directory")
    parser.add_argument("--device", default="cuda", help="where to move the models (cpu: a dry run of the script)")
    args = parser.parse_args()
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch; run this on a GPU machine")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        convert_all(workdir)
        examples: dict[str, list[object]] = {}
        failures = 0
        where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else args.device
        print(f"torch {torch.__version__}, {where}")
        for name, to, route in CASES:
            path = workdir / f"{name}_{route}.{'pt2' if to == 'pt2' else 'pt'}"
            label = f"{name:<18} {to:<12} {route:<13}"
            if name not in examples:  # the same inputs (the Keras model's layout) for both files of a model
                examples[name] = _example(torch.export.load(str(next(workdir.glob(f"{name}_*.pt2")))), seed=0)
            try:
                abs_err, rel_err = check(path, examples[name], args.device)
                print(f"{label} ok      {args.device} vs cpu: max abs {abs_err:.3e}, max rel {rel_err:.3e}")
            except Exception as err:  # noqa: BLE001 - report every artifact, then exit 1
                failures += 1
                print(f"{label} FAILED  {type(err).__name__}: {str(err).strip().splitlines()[0][:200]}")
                if os.environ.get("GPU_CHECK_TRACEBACK"):
                    traceback.print_exc()
    print("gpu_check:", f"all artifacts ran on {args.device} and matched the CPU" if not failures
          else f"{failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
