"""The verdict rests on the end-to-end comparison; intermediate hops only localize (fuzz regressions).

Both models were found by ``make fuzz``: onnxruntime, the intermediate runtime, is the one that is off (an
ill-conditioned LayerNorm over two channels; a LayerNorm over a single channel it refuses to run), while the
delivered Keras model matches PyTorch. Before the fix both conversions failed although the result was faithful.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from converter import ConvertOptions, convert
from fixtures.random_arch import ArchSpec, LayerSpec

ILL_CONDITIONED_LAYERNORM = ArchSpec(
    in_channels=3, size=16, seed=0, head=0,
    layers=(LayerSpec("conv", 1, 1, 0), LayerSpec("sigmoid"), LayerSpec("layernorm"), LayerSpec("conv", 0, 2, 0),
            LayerSpec("layernorm")))
SINGLE_CHANNEL_LAYERNORM = ArchSpec(in_channels=1, size=8, seed=0, head=0,
                                    layers=(LayerSpec("maxpool", 1, 1, 0), LayerSpec("layernorm")))


def _save(spec: ArchSpec, path: Path) -> Path:
    import torch

    from fixtures import random_arch

    model = random_arch.build(spec)
    x = torch.randn(2, spec.in_channels, spec.size, spec.size)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(path))
    return path


@pytest.mark.parametrize("spec", [ILL_CONDITIONED_LAYERNORM, SINGLE_CHANNEL_LAYERNORM],
                         ids=["ill-conditioned", "single-channel"])
def test_faithful_result_passes_although_onnxruntime_is_off(spec: ArchSpec, tmp_path: Path) -> None:
    src = _save(spec, tmp_path / "m.pt2")
    out = tmp_path / "m.keras"
    report_path = tmp_path / "r.json"
    result = convert(str(src), ConvertOptions(output=str(out), report_path=str(report_path)))
    hops = {h.name: h for h in result.report.hops}
    end_to_end = hops["pytorch -> keras (.keras file)"]
    assert end_to_end.decisive and end_to_end.passed
    assert max(o.max_abs_error for o in end_to_end.outputs) < 1e-4
    intermediate = hops["pytorch -> onnxruntime"]
    assert intermediate.role == "intermediate" and not intermediate.passed
    assert result.passed and out.exists() and result.report.failed_hop is None
    text = result.report.format_text()
    assert "[WARN] pytorch -> onnxruntime (intermediate)" in text and "result: PASSED" in text
    data = json.loads(report_path.read_text())
    assert data["passed"] and data["failed_hop"] is None
    assert [h["role"] for h in data["hops"]][-1] == "end-to-end"


def test_onnx_target_keeps_the_onnxruntime_hop_decisive(tmp_path: Path) -> None:
    """For an .onnx result onnxruntime *is* the delivered model's runtime: its disagreement fails the run."""
    src = _save(ILL_CONDITIONED_LAYERNORM, tmp_path / "m.pt2")
    out = tmp_path / "m.onnx"
    result = convert(str(src), ConvertOptions(output=str(out)))
    assert [h.role for h in result.report.hops] == ["end-to-end"]
    assert not result.passed and not out.exists()
    assert result.report.failed_hop.name == "pytorch -> onnxruntime"
