"""ONNX (as torch.onnx.export writes it today: opset 18, GRU, LayerNormalization, ReduceMean with axes input)
-> .pt2 through the same adapter, with a dynamic batch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")


class _SeqModel(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(16, 32)
        self.ln = torch.nn.LayerNorm(32)
        self.gru = torch.nn.GRU(32, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(self.ln(torch.relu(self.fc(x))))
        return self.head(y.mean(dim=1))


def test_torch_exported_onnx_to_pt2(tmp_path: Path) -> None:
    import onnx

    from converter.conversion import ConvertOptions, convert

    torch.manual_seed(0)
    model = _SeqModel().eval()
    src = tmp_path / "seq.onnx"
    torch.onnx.export(model, (torch.randn(2, 5, 16),), str(src), dynamo=True, input_names=["x"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    ops = {n.op_type for n in onnx.load(str(src)).graph.node}
    assert {"GRU", "LayerNormalization", "ReduceMean"} <= ops
    out = tmp_path / "seq.pt2"
    result = convert(str(src), ConvertOptions(output=str(out)))
    assert result.report.passed, result.report.format_text()
    assert result.report.dynamic_batch, result.report.notes
    reloaded = torch.export.load(str(out)).module()
    x = torch.randn(4, 5, 16)
    with torch.no_grad():
        np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-5, rtol=1e-4)
