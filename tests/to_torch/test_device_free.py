"""PyTorch artifacts from crossport name no device, so ``.to("cuda")`` moves everything (checked on the CPU).

Two checks without a GPU: no device literal is left in the graph (``device=cpu`` kwargs in the ExportedProgram,
``torch.device`` constants in TorchScript), and a ``.pt2`` moved to the ``meta`` device runs on meta inputs -- any
tensor still made on the CPU fails there exactly as it would on CUDA. ``benchmarks/gpu_check.py`` runs the same
artifacts on a real GPU.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from converter.device_free import device_literals, make_device_free

pytestmark = pytest.mark.slow


class MakesTensors(nn.Module):
    """Every way a graph makes a tensor on a device: factories, arange, a constant moved to the input's device."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(x.shape[0], 4, device=x.device)
        a = torch.arange(4, device=x.device, dtype=torch.float32)
        c = torch.tensor([1.0, 2.0, 3.0, 4.0]).to(x.device)
        return self.fc(x) + z + a + c + torch.ones(4, device=x.device)


def _runs_on_meta(module: nn.Module, x: torch.Tensor) -> bool:
    module = module.to("meta")
    return module(x.to("meta")).device.type == "meta"


def test_exported_program_loses_its_device_literals(tmp_path: Path) -> None:
    model, x = MakesTensors().eval(), torch.randn(2, 4)
    program = torch.export.export(model, (x,))
    assert device_literals(program)  # what torch.export records: the check can fail
    with pytest.raises(RuntimeError, match="device"):
        _runs_on_meta(torch.export.export(model, (x,)).module(), x)
    assert make_device_free(program) == ()
    torch.export.save(program, str(tmp_path / "m.pt2"))
    loaded = torch.export.load(str(tmp_path / "m.pt2"))
    assert device_literals(loaded) == []
    torch.testing.assert_close(loaded.module()(x), model(x), rtol=0, atol=0)
    assert _runs_on_meta(loaded.module(), x)


def test_torchscript_takes_the_device_from_its_input(tmp_path: Path) -> None:
    model, x = MakesTensors().eval(), torch.randn(2, 4)
    with pytest.warns(Warning):
        traced = torch.jit.trace(model, (x,))
    assert device_literals(traced)
    assert make_device_free(traced) == ()
    torch.jit.save(traced, str(tmp_path / "m.pt"))
    loaded = torch.jit.load(str(tmp_path / "m.pt"))
    assert device_literals(loaded) == [] and "prim::device" in str(loaded.inlined_graph)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("name,to,route", [
    ("lstm_text", "pt2", "keras-native"),  # Keras' torch backend: a .to(cpu) per tensor, zeros for the LSTM state
    ("lstm_text", "pt2", "onnx"),
    ("lstm_text", "torchscript", "onnx"),
    ("transformer_block", "pt2", "keras-native"),
    ("cnn", "torchscript", "onnx"),
])
def test_converted_pytorch_files_name_no_device(keras_files, tmp_path: Path, name: str, to: str,
                                                route: str) -> None:
    from converter import convert

    out = tmp_path / f"m.{'pt2' if to == 'pt2' else 'pt'}"
    result = convert(str(keras_files[name]), output=str(out), to=to, route=route, manifest=False)
    assert result.passed, result.report.format_text()
    assert not any("names a device" in n for n in result.report.notes), result.report.notes
    if to == "pt2":
        program = torch.export.load(str(out))
        assert device_literals(program) == []
        spec = next(s for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT")
        val = next(n for n in program.graph.nodes if n.name == spec.arg.name).meta["val"]
        x = torch.zeros([2 if not isinstance(d, int) else d for d in val.shape], dtype=val.dtype)
        assert _runs_on_meta(program.module(), x)
    else:
        assert device_literals(torch.jit.load(str(out))) == []


def test_gpu_check_script_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    """``benchmarks/gpu_check.py --device cpu``: the whole script (convert in a child, load, move, run, compare)
    without a GPU, so the script the lead runs on a GPU machine is known to work up to the device itself."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    proc = subprocess.run([sys.executable, str(script), "--device", "cpu", "--keep", str(tmp_path)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count(" ok ") == 6 and "matched the CPU" in proc.stdout, proc.stdout
