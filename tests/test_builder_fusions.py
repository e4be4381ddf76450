"""Patterns the Keras builder folds back into one Keras op: exact GELU, which torch.onnx.export spells out as
``x / sqrt(2) -> Erf -> + 1 -> * 0.5 -> * x``. As one ``ops.gelu`` the model reads like the source and TFLite maps
it to its builtin GELU kernel instead of needing Flex (Select TF) ops for the Erf."""
from __future__ import annotations

from pathlib import Path

import pytest


def _save(tmp_path: Path, approximate: str) -> Path:
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.GELU(approximate=approximate), nn.Linear(16, 4)).eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 8),), dynamic_shapes=({0: batch},))
    path = tmp_path / "mlp.pt2"
    torch.export.save(program, str(path))
    return path


def test_exact_gelu_becomes_one_keras_gelu(tmp_path: Path) -> None:
    import keras

    from converter import convert

    result = convert(str(_save(tmp_path, "none")), output=str(tmp_path / "m.keras"), manifest=False)
    assert result.passed, result.report.format_text()
    kinds = [type(op).__name__ for op in keras.models.load_model(str(tmp_path / "m.keras")).operations]
    assert "Gelu" in kinds and "Erf" not in kinds, kinds


def test_exact_gelu_needs_no_flex_ops_in_tflite(tmp_path: Path) -> None:
    from converter import convert

    result = convert(str(_save(tmp_path, "none")), output=str(tmp_path / "m.tflite"), manifest=False)
    assert result.passed, result.report.format_text()
    assert not any("Select TF ops" in note for note in result.report.notes), result.report.notes


@pytest.mark.parametrize("divisor", [2.0, 1.5])
def test_a_look_alike_is_not_fused(tmp_path: Path, divisor: float) -> None:
    """Only the exact constants make a GELU: x / 2 -> Erf -> ... stays spelled out and still verifies."""
    import keras
    import torch
    from torch import nn

    from converter import convert

    class NotGelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.lin(x)
            return h * (0.5 * (torch.erf(h / divisor) + 1.0))

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(NotGelu().eval(), (torch.randn(2, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "n.pt2"))
    result = convert(str(tmp_path / "n.pt2"), output=str(tmp_path / "n.keras"), manifest=False)
    assert result.passed, result.report.format_text()
    kinds = [type(op).__name__ for op in keras.models.load_model(str(tmp_path / "n.keras")).operations]
    assert "Gelu" not in kinds, kinds
