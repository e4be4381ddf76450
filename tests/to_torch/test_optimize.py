"""The ONNX -> PyTorch graph passes (``converter.to_torch.optimize``): each on a small ONNX graph against onnxruntime,
and end to end on a Keras CNN (no pad copies, no layout permutes between layers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _pad_then(op: str, pads: list[int], relu: bool, **attrs: object) -> object:
    """X (1, 3, 9, 9) [-> Relu] -> Pad(pads, constant 0) -> op."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    nodes = [helper.make_node("Relu", ["X"], ["R"])] if relu else []
    nodes.append(helper.make_node("Pad", ["R" if relu else "X", "pads"], ["P"]))
    if op == "Conv":
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W"))
        nodes.append(helper.make_node("Conv", ["P", "W"], ["Y"], **attrs))
    else:
        nodes.append(helper.make_node(op, ["P"], ["Y"], **attrs))
    graph = helper.make_graph(nodes, "pad_then", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 9, 9])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op,pads,relu,attrs,folds", [
    ("Conv", [0, 0, 1, 2, 0, 0, 1, 2], False, {"strides": [2, 2]}, True),  # ZeroPadding2D((1, 2)) + valid conv
    ("Conv", [0, 0, 0, 0, 0, 0, 1, 1], False, {"strides": [2, 2]}, False),  # TF 'same' stride 2: asymmetric
    ("Conv", [1, 0, 1, 1, 0, 0, 1, 1], False, {}, False),  # pads the batch axis
    ("MaxPool", [0, 0, 1, 1, 0, 0, 1, 1], True, {"kernel_shape": [3, 3], "strides": [2, 2]}, True),  # ResNet stem
    ("MaxPool", [0, 0, 1, 1, 0, 0, 1, 1], False, {"kernel_shape": [3, 3], "strides": [2, 2]}, False),  # x < 0
    ("AveragePool", [0, 0, 1, 1, 0, 0, 1, 1], False, {"kernel_shape": [3, 3]}, True),
    ("AveragePool", [0, 0, 2, 2, 0, 0, 2, 2], False, {"kernel_shape": [3, 3]}, False),  # pad > kernel / 2
])
def test_pad_folds_into_its_consumer_exactly(op: str, pads: list[int], relu: bool, attrs: dict,
                                             folds: bool) -> None:
    import onnxruntime as ort
    import torch

    from converter.adapters import onnx2torch_adapter
    from converter.to_torch import modules as M
    from converter.to_torch.artifacts import export_program
    from converter.to_torch.optimize import fold_pads

    model = _pad_then(op, pads, relu, **attrs)
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 9)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x})[0]
    gm = onnx2torch_adapter.convert(model).module.eval()
    assert fold_pads(gm) == int(folds)
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=1e-5)
    assert any(n.target is M.pad_static for n in gm.graph.nodes) != folds
    program, _, _ = export_program(gm, [torch.from_numpy(x)], False)  # a constant pad exports (it did not)
    assert any("aten.pad" in str(n.target) for n in program.graph.nodes) != folds


def test_keras_cnn_pt2_has_no_pad_copies_or_inner_permutes(tmp_path: Path) -> None:
    """ZeroPadding2D + valid conv and ZeroPadding2D + ReLU + MaxPool (ResNet's stem) become conv/pool padding; the
    NHWC model keeps one permute (a view, at the input) and ``--nchw`` none."""
    import torch

    from converter.conversion import ConvertOptions, convert
    from converter.frameworks import keras

    k = keras()
    k.utils.set_random_seed(0)
    x = inp = k.Input((16, 16, 3))
    x = k.layers.ZeroPadding2D(3)(x)
    x = k.layers.Conv2D(8, 7, strides=2)(x)
    x = k.layers.BatchNormalization()(x)
    x = k.layers.ReLU()(x)
    x = k.layers.ZeroPadding2D(1)(x)
    x = k.layers.MaxPooling2D(3, strides=2)(x)
    x = k.layers.Conv2D(8, 3, padding="same")(x)
    out = k.layers.Dense(4)(k.layers.GlobalAveragePooling2D()(x))
    k.Model(inp, out).save(str(tmp_path / "stem.keras"))
    for nchw, permutes in ((False, 1), (True, 0)):
        target = tmp_path / f"stem{int(nchw)}.pt2"
        result = convert(str(tmp_path / "stem.keras"), ConvertOptions(output=str(target), nchw=nchw))
        assert result.report.passed and result.report.route_name == "onnx", result.report.format_text()
        calls = [str(n.target) for n in torch.export.load(str(target)).graph.nodes if n.op == "call_function"]
        assert not [c for c in calls if "pad" in c], calls
        assert sum("permute" in c or "transpose" in c for c in calls) == permutes, calls
