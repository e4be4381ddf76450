"""Regression tests: KerasRunner and one-input subclassed models; ONNX sources with external weight files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def test_keras_runner_passes_the_tensor_to_a_one_input_subclassed_model() -> None:
    from converter.frameworks import keras
    from converter.layout import Layout
    from converter.parity.runners import KerasRunner

    k = keras()

    class FirstTwo(k.Model):
        """Slices its input: a one-element list instead of the tensor breaks it."""

        def call(self, x):  # noqa: ANN001, ANN201
            return x[:, :2] * 2.0

    model = FirstTwo()
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    model(x)
    out = KerasRunner(model, (Layout.NONE,), (Layout.NONE,)).run([x])
    np.testing.assert_allclose(out[0], x[:, :2] * 2.0)


def _gemm_model_with_external_data(directory: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((6, 4)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b")
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"])
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])], initializer=[w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = directory / "gemm.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="gemm.data",
              size_threshold=0)
    assert (directory / "gemm.data").is_file()
    assert not any(i.raw_data for i in onnx.load(str(path), load_external_data=False).graph.initializer)
    return path


@pytest.mark.parametrize("target", ["keras", "pt2"])
def test_onnx_source_with_external_data(target: str, tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = _gemm_model_with_external_data(src_dir)
    out = tmp_path / ("gemm.keras" if target == "keras" else "gemm.pt2")
    result = convert(str(src), ConvertOptions(output=str(out)))  # run from elsewhere: the .data is found by onnx
    assert result.report.passed, result.report.format_text()
    assert out.exists()
    if target == "pt2":
        assert result.report.trainable_params["pytorch"] == 6 * 4 + 4
