"""The exporter skips ``run_decompositions`` only when that cannot change the result
(``converter.adapters.torch_onnx_prepare``): training-IR spellings are rewritten, an observable in-place write or
an op torchlib lacks keeps the exporter's decomposition, and the ONNX file computes what PyTorch computes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def _modules():  # noqa: ANN202 - nn.Module classes built after importing torch
    import torch
    from torch import nn

    class InPlaceBlock(nn.Module):
        """The torchvision spellings: relu_(bn(conv)), out += identity, eval dropout_, global average pool."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.up = nn.ConvTranspose2d(8, 4, 2, stride=2)
            self.act = nn.Hardswish(inplace=True)
            self.drop = nn.Dropout(0.3, inplace=True)
            self.fc = nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu_(self.bn(self.conv(x)))
            y += torch.sigmoid(y)
            z = self.act(self.up(y))
            pooled = nn.functional.adaptive_avg_pool2d(z, 1).flatten(1)
            return self.fc(self.drop(pooled))

    class ObservedWrite(nn.Module):
        """``add_`` writes a tensor whose view, taken before the write, is read afterwards (the traced graph reads
        the view's node, not the write's): only the decomposition keeps this right."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.relu(x)
            flat = y.view(y.shape[0], -1)
            y.add_(1.0)
            return flat * 2

    class ViewWrite(nn.Module):
        """``relu_`` on a view writes through to its base, which is read afterwards."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * 3
            y.view(-1).relu_()
            return y + 1

    class OddPool(nn.Module):
        """An adaptive pool to 3x3 of an 8x8 map is not rewritten: the decomposition handles it."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.adaptive_avg_pool2d(x, 3)

    class Aliases(nn.Module):
        """Spellings torchlib does not register: swapaxes, .to(dtype), an adaptive pool to a divisor (VGG's 7x7)."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            pooled = nn.functional.adaptive_avg_pool2d(x, 2).to(torch.float32)
            return torch.swapaxes(pooled, 1, 3).flatten(1)

    class MaskWrite(nn.Module):
        """Swin's attention mask: regions of a fresh zero tensor written through slices and a select, then read."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            mask = x.new_zeros((8, 8))
            mask[:4, :4] = 1.0
            mask[4:, 2] = 2.0
            mask[6:, :] = torch.tensor(3.0)
            return x * 2 + mask

    return {"mask": (MaskWrite, True), "inplace": (InPlaceBlock, True), "observed": (ObservedWrite, False), "view": (ViewWrite, False),
            "pool": (OddPool, False), "aliases": (Aliases, True)}


@pytest.mark.parametrize("name", ["inplace", "observed", "view", "pool", "aliases", "mask"])
def test_skips_decomposition_only_when_safe(name: str, tmp_path: Path) -> None:
    import onnxruntime as ort
    import torch
    from torch.onnx._internal.exporter import _registration

    from converter.adapters import torch_onnx
    from converter.adapters.torch_onnx_prepare import translatable

    cls, expect_skip = _modules()[name]
    torch.manual_seed(0)
    model = cls().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = model(x.clone()).numpy()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},), strict=False)
    assert translatable(program, _registration.ONNXRegistry.from_torchlib(torch_onnx.OPSET)) is expect_skip

    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},), strict=False)
    torch_onnx.export(program, (x,), tmp_path / "m.onnx", n_outputs=1)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for rows in (2, 3):
        xb = torch.randn(rows, 3, 8, 8)
        with torch.no_grad():
            want = model(xb.clone()).numpy()
        got = session.run(None, {session.get_inputs()[0].name: xb.numpy()})[0]
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert expected.shape[0] == 2


def test_type_promotion_runs_when_dtypes_mix(tmp_path: Path) -> None:
    """An int64 tensor meeting a float one needs the exporter's cast: the pass is skipped only for one float dtype."""
    import onnxruntime as ort
    import torch
    from torch import nn

    from converter.adapters import torch_onnx
    from converter.adapters.torch_onnx_prepare import one_float_dtype

    class Mixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            steps = torch.arange(x.shape[-1])  # int64
            return x * steps + torch.relu(x)

    class Float(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x) * 2 + 1

    x = torch.randn(2, 5)
    assert one_float_dtype(torch.export.export(Float(), (x,), strict=False).graph_module)
    program = torch.export.export(Mixed(), (x,), strict=False)
    assert not one_float_dtype(program.graph_module)
    torch_onnx.export(program, (x,), tmp_path / "m.onnx", n_outputs=1, dynamic_batch=False)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, Mixed()(x).numpy(), atol=1e-6)
