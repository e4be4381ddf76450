"""The ONNX -> PyTorch graph passes (``converter.to_torch.optimize``): each on a small ONNX graph against onnxruntime,
and end to end on a Keras CNN (no pad copies, no layout permutes between layers)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _pad_then(op: str, pads: list[int], relu: bool, size: int = 9, kernel: int = 3, **attrs: object) -> object:
    """X (1, 3, size, size) [-> Relu] -> Pad(pads, constant 0) -> op."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    nodes = [helper.make_node("Relu", ["X"], ["R"])] if relu else []
    nodes.append(helper.make_node("Pad", ["R" if relu else "X", "pads"], ["P"]))
    if op == "Conv":
        inits.append(numpy_helper.from_array(rng.standard_normal((4, 3, kernel, kernel)).astype(np.float32), "W"))
        nodes.append(helper.make_node("Conv", ["P", "W"], ["Y"], **attrs))
    else:
        nodes.append(helper.make_node(op, ["P"], ["Y"], **attrs))
    graph = helper.make_graph(nodes, "pad_then", [helper.make_tensor_value_info("X", TensorProto.FLOAT,
                                                                                [1, 3, size, size])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("op,pads,relu,attrs,folds", [
    ("Conv", [0, 0, 1, 2, 0, 0, 1, 2], False, {"strides": [2, 2]}, True),  # ZeroPadding2D((1, 2)) + valid conv
    # TF 'same' at stride 2 pads one more after: a larger symmetric padding, then the shifted window (odd, even
    # sizes; NASNet's 5x5 and 7x7 separable convs pad (1, 2) and (2, 3))
    ("Conv", [0, 0, 0, 0, 0, 0, 1, 1], False, {"strides": [2, 2]}, True),
    ("Conv", [0, 0, 0, 0, 0, 0, 1, 1], False, {"strides": [2, 2], "size": 10}, True),
    ("Conv", [0, 0, 1, 1, 0, 0, 2, 2], False, {"strides": [2, 2], "size": 10, "kernel": 5}, True),
    ("Conv", [0, 0, 2, 2, 0, 0, 3, 3], False, {"strides": [2, 2], "size": 11, "kernel": 7}, True),
    ("Conv", [0, 0, 0, 1, 0, 0, 1, 1], False, {"strides": [2, 2], "size": 10}, True),  # shifted H, symmetric W
    ("Conv", [0, 0, 0, 0, 0, 0, 3, 3], False, {"strides": [2, 2]}, False),  # 3 more after than before > stride
    ("Conv", [0, 0, 1, 1, 0, 0, 0, 0], False, {"strides": [2, 2]}, False),  # more before than after
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

    attrs = dict(attrs)
    size, kernel = int(attrs.pop("size", 9)), int(attrs.pop("kernel", 3))
    model = _pad_then(op, pads, relu, size, kernel, **attrs)
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
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


@pytest.mark.parametrize("size", [9, 10])
def test_conv_with_asymmetric_pads_attribute_folds(size: int) -> None:
    """tf2onnx writes Keras' ``Conv2D(strides=2, padding="same")`` as one Conv with ``pads=[0, 0, 1, 1]``, which
    onnx2torch makes ``Sequential(pad, conv)``: it folds as a Pad node does, and the conv keeps its name."""
    import onnxruntime as ort
    import torch

    from converter.adapters import onnx2torch_adapter
    from converter.to_torch.artifacts import export_program
    from converter.to_torch.optimize import fold_pads

    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "W")
    node = helper.make_node("Conv", ["X", "W"], ["Y"], strides=[2, 2], pads=[0, 0, 1, 1], name="conv")
    graph = helper.make_graph([node], "padded_conv",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    x = np.random.default_rng(1).standard_normal((1, 3, size, size)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x})[0]
    gm = onnx2torch_adapter.convert(model).module.eval()
    assert fold_pads(gm) == 1
    assert isinstance(gm.get_submodule("conv"), torch.nn.Conv2d)
    with torch.no_grad():
        np.testing.assert_allclose(gm(torch.from_numpy(x)).numpy(), expected, atol=1e-5, rtol=1e-5)
    program, _, _ = export_program(gm, [torch.from_numpy(x)], False)
    assert not [n for n in program.graph.nodes if "pad" in str(n.target)]


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


def _conv_relu_graph(relu_input_read_twice: bool) -> object:
    """X -> Conv -> Relu -> Y, and with ``relu_input_read_twice`` also Conv's output + Relu's output."""
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "W")]
    nodes = [helper.make_node("Conv", ["X", "W"], ["C"]), helper.make_node("Clip", ["C", "lo", "hi"], ["R"])]
    inits += [numpy_helper.from_array(np.array(0, np.float32), "lo"),
              numpy_helper.from_array(np.array(6, np.float32), "hi")]
    nodes.append(helper.make_node("Add", ["C", "R"], ["Y"]) if relu_input_read_twice
                 else helper.make_node("Relu", ["R"], ["Y"]))
    graph = helper.make_graph(nodes, "conv_relu", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 3, 9, 9])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("read_twice,inplace", [(False, 1), (True, 0)])
def test_activation_overwrites_its_input_only_when_nothing_else_reads_it(read_twice: bool, inplace: int) -> None:
    """ReLU6 after a conv becomes in-place (no new tensor); not when the conv's output is also added to it. A ReLU
    whose input is the ReLU6's output stays out of place (that input is a view of the conv's output now)."""
    import onnxruntime as ort
    import torch

    from converter.adapters import onnx2torch_adapter
    from converter.to_torch.artifacts import export_program
    from converter.to_torch.optimize import inplace_activations

    model = _conv_relu_graph(read_twice)
    x = np.random.default_rng(1).standard_normal((1, 3, 9, 9)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"X": x})[0]
    gm = onnx2torch_adapter.convert(model).module.eval()
    assert inplace_activations(gm) == inplace
    with torch.no_grad():
        got = gm(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=1e-5)
    program, _, _ = export_program(gm, [torch.from_numpy(x)], False)
    assert any(str(n.target) == "aten.hardtanh_.default" for n in program.graph.nodes) == bool(inplace)
    np.testing.assert_allclose(program.module()(torch.from_numpy(x)).detach().numpy(), expected, atol=1e-5,
                               rtol=1e-5)


def test_keras_mobile_block_pt2_runs_like_torchvision_written_channels_last(tmp_path: Path) -> None:
    """A MobileNetV2 / EfficientNet-style Keras model (swish stem, depthwise stride-2 'same' conv, ReLU6, residual
    add + ReLU) as ``.pt2``: swish is one ``aten.silu``, the ReLUs overwrite the conv / sum they follow, no pad copy,
    and the
    conv weights are stored channels-last (the NHWC input's view is channels-last) with no copy of the input;
    ``--nchw`` keeps contiguous weights. Both match Keras."""
    import torch

    from converter.conversion import ConvertOptions, convert
    from converter.frameworks import keras
    from tests.to_torch.conftest import keras_reference

    k = keras()
    k.utils.set_random_seed(0)
    x = inp = k.Input((16, 16, 3))
    x = k.layers.Conv2D(8, 3, padding="same", activation="swish")(x)
    y = k.layers.DepthwiseConv2D(3, strides=2, padding="same")(x)
    y = k.layers.BatchNormalization()(y)
    y = k.layers.ReLU(6.0)(y)
    y = k.layers.Conv2D(8, 1)(y)
    z = k.layers.ReLU()(k.layers.Add()([y, k.layers.Conv2D(8, 1, strides=2)(x)]))
    out = k.layers.Dense(4)(k.layers.GlobalAveragePooling2D()(z))
    model = k.Model(inp, out)
    rng = np.random.default_rng(3)
    for w in model.weights:
        w.assign((rng.standard_normal(w.shape) * 0.3 + (1.0 if "variance" in w.path else 0.0)).astype("float32"))
    model.save(str(tmp_path / "mobile.keras"))
    feeds, outs, _ = keras_reference(tmp_path / "mobile.keras", 2)
    for nchw in (False, True):
        target = tmp_path / f"mobile{int(nchw)}.pt2"
        result = convert(str(tmp_path / "mobile.keras"), ConvertOptions(output=str(target), nchw=nchw))
        assert result.report.passed and result.report.route_name == "onnx", result.report.format_text()
        program = torch.export.load(str(target))
        calls = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
        assert "aten.silu.default" in calls and "aten.sigmoid.default" not in calls, calls
        assert "aten.hardtanh_.default" in calls and "aten.relu_.default" in calls, calls
        assert not [c for c in calls if "pad" in c], calls  # the depthwise conv's 'same' stride-2 pad is folded
        assert not [c for c in calls if "contiguous" in c or "clone" in c and "memory_format" in c], calls
        convs = [v for name, v in program.state_dict.items() if v.dim() == 4]
        assert len(convs) == 4
        spatial = [v for v in convs if v.shape[1] > 1 and v.shape[-1] > 1]  # where the two layouts differ
        assert spatial and all(v.is_contiguous(memory_format=torch.channels_last) != nchw for v in spatial)
        x = torch.from_numpy(feeds[0])
        with torch.inference_mode():
            got = program.module()(x.permute(0, 3, 1, 2).contiguous() if nchw else x).numpy()
        np.testing.assert_allclose(got, outs[0], atol=1e-4, rtol=1e-4)
