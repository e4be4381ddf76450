"""Does the PyTorch -> ONNX export skip ``run_decompositions`` on real architectures, and is the result right?

For each torchvision model (random init, eval, seed 0): ``torch.export`` with a dynamic batch, whether
``converter.adapters.torch_onnx_prepare.translatable`` lets the exporter skip its re-trace, the export time through
``converter.adapters.torch_onnx.export``, and the worst relative error (max |onnxruntime - PyTorch| / max |PyTorch|)
at batch 2 and 3. Run from the repository root:

    .venv/bin/python benchmarks/export_check.py                       # the default list
    .venv/bin/python benchmarks/export_check.py --models swin_t,vgg11_bn --size 224
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT = ("resnet18,mobilenet_v3_small,mobilenet_v3_large,mobilenet_v2,efficientnet_b0,efficientnet_v2_s,"
           "convnext_tiny,densenet121,squeezenet1_1,shufflenet_v2_x1_0,googlenet,inception_v3,mnasnet0_5,"
           "regnet_x_400mf,regnet_y_400mf,resnext50_32x4d,wide_resnet50_2,alexnet,vgg11_bn,swin_t,maxvit_t,"
           "fcn_resnet50,deeplabv3_mobilenet_v3_large,lraspp_mobilenet_v3_large")


def _model(name: str) -> Any:
    import torchvision

    seg = torchvision.models.segmentation
    if hasattr(seg, name):
        extra = {} if name.startswith("lraspp") else {"aux_loss": False}
        return getattr(seg, name)(weights=None, weights_backbone=None, **extra)
    extra = {"aux_logits": False, "init_weights": False} if name in ("googlenet", "inception_v3") else {}
    return getattr(torchvision.models, name)(weights=None, **extra)


def check(name: str, size: int, work: Path) -> str:
    import numpy as np
    import onnxruntime as ort
    import torch
    from torch.onnx._internal.exporter import _registration

    from converter.adapters import torch_onnx
    from converter.adapters.torch_onnx_prepare import translatable

    torch.manual_seed(0)
    model = _model(name).eval()
    side = 299 if name == "inception_v3" else size
    x = torch.randn(2, 3, side, side)
    dims = ({0: torch.export.Dim("batch", min=1, max=64)},)

    def program() -> Any:
        return torch.export.export(model, (x,), dynamic_shapes=dims, strict=False)

    skips = translatable(program(), _registration.ONNXRegistry.from_torchlib(torch_onnx.OPSET))
    t0 = time.perf_counter()
    torch_onnx.export(program(), (x,), work / f"{name}.onnx", n_outputs=1, external_data=True)
    seconds = time.perf_counter() - t0
    session = ort.InferenceSession(str(work / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    worst = 0.0
    for rows in (2, 3):
        xb = torch.randn(rows, 3, side, side)
        with torch.no_grad():
            ref = model(xb)
        ref = (ref["out"] if isinstance(ref, dict) else ref).numpy()
        got = session.run(None, {session.get_inputs()[0].name: xb.numpy()})[0]
        worst = max(worst, float(np.abs(got - ref).max() / (np.abs(ref).max() + 1e-12)))
    return f"| {name} | {side} | {'yes' if skips else 'no'} | {seconds:.1f} | {worst:.1e} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=DEFAULT, help="comma-separated torchvision model names")
    parser.add_argument("--size", type=int, default=224, help="input height and width (Inception v3: 299)")
    args = parser.parse_args()
    print("| model | input px | decomposition skipped | export (s) | max rel error vs PyTorch |")
    print("|---|---:|---|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="crossport-export-check-") as tmp:
        for name in args.models.split(","):
            try:
                print(check(name, args.size, Path(tmp)), flush=True)
            except Exception as err:  # noqa: BLE001 - one model's failure is a row, not the end of the run
                print(f"| {name} | {args.size} | error | | {type(err).__name__}: {str(err)[:120]} |", flush=True)


if __name__ == "__main__":
    main()
