"""The default verdict is right at every output scale (converter/parity/compare.py): float32 rounding in a
network whose outputs are ~1e4 passes, while real conversion bugs -- a BatchNorm with the wrong epsilon, two
swapped channels, a 1e-3-relative weight error -- fail at output scale 1 and 1e4 alike."""
from __future__ import annotations

import numpy as np
import pytest

from converter.parity.compare import Tolerance, compare_arrays


def _net(out_scale: float, eps: float = 1e-5):
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16, eps=eps), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16, eps=eps), nn.ReLU(),
        nn.Conv2d(16, 8, 3, padding=1),
    )
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.02, 0.2)  # small variances: epsilon matters, as in trained nets
        net[-1].weight.mul_(out_scale)
        net[-1].bias.mul_(out_scale)
    return net.eval()


def _run(net, dtype) -> np.ndarray:
    import torch

    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3, 16, 16)))
    with torch.no_grad():
        return net.to(dtype)(x.to(dtype)).double().numpy()


def test_float32_rounding_at_output_scale_1e4_passes() -> None:
    import torch

    net = _net(1e4)
    reference, candidate = _run(net, torch.float64), _run(_net(1e4), torch.float32)
    row = compare_arrays("y", candidate, reference, Tolerance())
    assert row.reference_rms > 1e3
    assert row.passed, row
    # The element-wise view alone would call the same rounding a failure; the report keeps both.
    strict = compare_arrays("y", candidate, reference, Tolerance(scale=0.0))
    assert not strict.passed and not row.elementwise_passed and row.elementwise_mismatches > 0


@pytest.mark.parametrize("out_scale", [1.0, 1e4])
@pytest.mark.parametrize("bug", ["batchnorm_epsilon", "swapped_channels", "weight_1e-3"])
def test_real_bugs_still_fail(out_scale: float, bug: str) -> None:
    import torch

    reference = _run(_net(out_scale), torch.float32)
    if bug == "batchnorm_epsilon":
        candidate = _run(_net(out_scale, eps=1e-3), torch.float32)
    elif bug == "swapped_channels":
        candidate = reference.copy()
        candidate[:, [2, 5]] = candidate[:, [5, 2]]
    else:
        wrong = _net(out_scale)
        with torch.no_grad():
            wrong[3].weight.mul_(1 + 1e-3)
        candidate = _run(wrong, torch.float32)
    row = compare_arrays("y", candidate, reference, Tolerance())
    assert not row.passed, (bug, out_scale, row.max_abs_error, row.reference_rms)


def test_scale_zero_is_the_elementwise_criterion() -> None:
    ref = np.array([1e4, 0.0, -1e4])
    cand = ref + np.array([0.0, 5e-4, 0.0])
    assert not compare_arrays("y", cand, ref, Tolerance(scale=0.0)).passed
    assert compare_arrays("y", cand, ref, Tolerance()).passed
    assert not compare_arrays("y", ref + np.array([0.0, 1.0, 0.0]), ref, Tolerance()).passed


def _scaled_onnx(path, offset: float):
    """y = 1e4 * x + offset: outputs of magnitude ~1e4, some elements near zero."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = numpy_helper.from_array(np.array(1e4, dtype=np.float32), "k")
    b = numpy_helper.from_array(np.array(offset, dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["xk"]), helper.make_node("Add", ["xk", "b"], ["y"])], "scaled",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 64])], [k, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_verify_cli_default_is_scale_aware_and_elementwise_is_on_request(tmp_path) -> None:
    """An offset of 1e-2 on outputs of scale 1e4 (float32 rounding is ~1e-3 there) passes by default; the user who
    asks for --elementwise gets the strict verdict, and the default report still shows the element-wise view."""
    import subprocess
    import sys

    ref, cand = _scaled_onnx(tmp_path / "ref.onnx", 0.0), _scaled_onnx(tmp_path / "cand.onnx", 1e-2)
    cmd = [sys.executable, "-c", "from converter.cli import main; main()", "verify", str(ref), str(cand)]
    default = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert default.returncode == 0, default.stdout + default.stderr
    assert "element-wise alone" in default.stdout and "rms(b)" in default.stdout
    strict = subprocess.run([*cmd, "--elementwise"], capture_output=True, text=True, timeout=600)
    assert strict.returncode == 1, strict.stdout + strict.stderr
    assert "rms(b)" not in strict.stdout
