"""The TensorFlow-direction fallback through the one route loop: a graph crossport's builder refuses goes to
onnx2tf under ``--route auto``, the report says so in a note, and ``--route builder`` keeps the refusal."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

HAVE_ONNX2TF = importlib.util.find_spec("onnx2tf") is not None


def _hardmax_onnx(path: Path) -> Path:
    """Hardmax: an op onnx2tf converts and the builder does not (an op the builder will not grow soon)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.linspace(-1, 1, 8, dtype=np.float32).reshape(1, 8), "w")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "w"], ["xw"]), helper.make_node("Hardmax", ["xw"], ["y"], axis=-1)],
        "hardmax", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.skipif(not HAVE_ONNX2TF, reason="onnx2tf is the optional extra crossport[onnx2tf]")
def test_builder_refusal_falls_back_to_onnx2tf(tmp_path: Path) -> None:
    from converter import ConvertOptions, convert
    from converter.errors import UnsupportedError

    source = str(_hardmax_onnx(tmp_path / "hardmax.onnx"))
    try:
        convert(source, ConvertOptions(output=str(tmp_path / "b.tflite"), route="builder", manifest=False))
    except UnsupportedError as err:
        refusal = str(err)
    else:
        pytest.skip("the builder converts Hardmax now; this test needs an op it refuses")
    assert not (tmp_path / "b.tflite").exists()
    result = convert(source, ConvertOptions(output=str(tmp_path / "a.tflite"), manifest=False))
    report = result.report
    assert report.passed and result.artifact is not None and result.artifact.is_file()
    assert "onnx2tf" in report.route and "keras 3 (crossport builder)" not in report.route
    assert f"crossport's Keras builder could not convert the graph ({refusal}); used onnx2tf" in report.notes
    assert report.route_attempts == () and report.route_name == ""  # as before: the TF report lists no attempts


@pytest.mark.skipif(HAVE_ONNX2TF, reason="onnx2tf is installed here")
def test_without_onnx2tf_the_builder_refusal_stands_and_the_route_says_how_to_install(tmp_path: Path) -> None:
    """onnx2tf is an extra: auto never needs it (the builder's own refusal is the answer, exit 5, one line), and
    ``--route onnx2tf`` says how to install it. Nothing is written either way."""
    from converter import ConvertOptions, convert
    from converter.errors import UnsupportedError

    source = str(_hardmax_onnx(tmp_path / "hardmax.onnx"))
    try:
        convert(source, ConvertOptions(output=str(tmp_path / "a_sm"), to="saved_model", manifest=False))
    except UnsupportedError as err:
        assert "Hardmax" in str(err) and "\n" not in str(err) and err.exit_code == 5
    else:
        pytest.skip("the builder converts Hardmax now; this test needs an op it refuses")
    with pytest.raises(UnsupportedError, match=r"pip install 'crossport\[onnx2tf\]'") as forced:
        convert(source, ConvertOptions(output=str(tmp_path / "b_sm"), to="saved_model", route="onnx2tf",
                                       manifest=False))
    assert "\n" not in str(forced.value)
    assert not (tmp_path / "a_sm").exists() and not (tmp_path / "b_sm").exists()


@pytest.mark.slow
@pytest.mark.parametrize("target", ["keras", "tflite"])
def test_builder_refusal_offers_only_real_ways_out(tmp_path: Path, target: str) -> None:
    """An op the builder cannot translate (Det): the message names the op and its module, and offers what works
    here -- ``--to onnx`` (which then converts), onnx2tf only where it is installed, and never for ``.keras``."""
    import torch
    from click.testing import CliRunner

    from converter.cli import main

    class Det(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.linalg.det(x).unsqueeze(-1) * x.sum((1, 2))[:, None]

    src = tmp_path / "det.pt2"
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(torch.export.export(Det(), (torch.randn(2, 3, 3),), dynamic_shapes=({0: batch},)), str(src))
    runner = CliRunner()
    out = tmp_path / f"det.{target}"
    result = runner.invoke(main, ["convert", str(src), "-o", str(out), "-q"], catch_exceptions=False)
    if result.exit_code == 0:
        pytest.skip("the builder converts Det now; this test needs an op it refuses")
    line = result.output.strip().splitlines()[-1]
    assert result.exit_code == 5 and "'Det'" in line and "linalg_det" in line and "--to onnx" in line, line
    assert ("onnx2tf" in line) == (HAVE_ONNX2TF or target != "keras" and "pip install" in line), line
    if target == "keras":
        assert "no other route writes .keras" in line
    onnx = runner.invoke(main, ["convert", str(src), "-o", str(tmp_path / "det.onnx"), "-q"], catch_exceptions=False)
    assert onnx.exit_code == 0, onnx.output
