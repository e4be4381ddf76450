"""One-node ONNX graphs for every converter crossport registers with onnx2torch, compared with onnxruntime."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _out(name: str, rank: int) -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [None] * rank)


def _model(node: object, inputs: list, outputs: list, inits: list, opset: int) -> object:
    graph = helper.make_graph([node], "one_node", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _compare(model: object, feeds: dict[str, np.ndarray], atol: float = 1e-5) -> object:
    import onnxruntime as ort
    import torch

    from converter.adapters import onnx2torch_adapter

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(None, feeds)
    module = onnx2torch_adapter.convert(model).module
    with torch.no_grad():
        got = module(*[torch.from_numpy(v) for v in feeds.values()])
    got = got if isinstance(got, (tuple, list)) else (got,)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g.numpy(), e, atol=atol, rtol=1e-5)
    return module


def _rnn_case(op: str, gates: int, direction: str, layout: int, attrs: dict, with_state: bool) -> None:
    rng = np.random.default_rng(0)
    seq, batch, inp, hidden = 5, 3, 4, 6
    dirs = 2 if direction == "bidirectional" else 1
    w = rng.standard_normal((dirs, gates * hidden, inp)).astype(np.float32) * 0.5
    r = rng.standard_normal((dirs, gates * hidden, hidden)).astype(np.float32) * 0.5
    b = rng.standard_normal((dirs, 2 * gates * hidden)).astype(np.float32) * 0.5
    x_shape = (seq, batch, inp) if layout == 0 else (batch, seq, inp)
    h_shape = (dirs, batch, hidden) if layout == 0 else (batch, dirs, hidden)
    x = rng.standard_normal(x_shape).astype(np.float32)
    names = ["X", "W", "R", "B", ""]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, x_shape)]
    feeds = {"X": x}
    if with_state:
        names.append("H0")
        inputs.append(helper.make_tensor_value_info("H0", TensorProto.FLOAT, h_shape))
        feeds["H0"] = rng.standard_normal(h_shape).astype(np.float32)
        if op == "LSTM":
            names.append("C0")
            inputs.append(helper.make_tensor_value_info("C0", TensorProto.FLOAT, h_shape))
            feeds["C0"] = rng.standard_normal(h_shape).astype(np.float32)
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, names, outs, hidden_size=hidden, direction=direction, layout=layout, **attrs)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "W"), (r, "R"), (b, "B"))]
    outputs = [_out(o, 4 if o == "Y" else 3) for o in outs]
    module = _compare(_model(node, inputs, outputs, inits, 14), feeds)
    import torch

    params = {n.removesuffix("_l0") for n, p in module.named_parameters() if p.requires_grad}
    assert any(n.endswith("weight_ih") for n in params) and any(n.endswith("weight_hh") for n in params)
    # PyTorch's own recurrent kernel where one exists (GRU reset_after=False has none)
    fused = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}[op] if op == "LSTM" or attrs["linear_before_reset"] else None
    assert fused is None or any(type(m) is fused for m in module.modules())


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
@pytest.mark.parametrize("layout", [0])  # onnxruntime 1.23 refuses layout=1 ("Batchwise recurrent operations")
def test_lstm(direction: str, layout: int) -> None:
    _rnn_case("LSTM", 4, direction, layout, {}, with_state=direction != "reverse")


@pytest.mark.parametrize("linear_before_reset", [0, 1])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_gru(linear_before_reset: int, direction: str) -> None:
    _rnn_case("GRU", 3, direction, 0, {"linear_before_reset": linear_before_reset}, with_state=True)


@pytest.mark.parametrize("op", ["ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                                "ReduceLogSumExp", "ReduceSumSquare"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_opset18_axes_input(op: str, keepdims: int) -> None:
    x = np.random.default_rng(1).random((2, 3, 4, 5)).astype(np.float32) + 0.5
    axes = numpy_helper.from_array(np.array([1, -1], np.int64), "axes")
    node = helper.make_node(op, ["X", "axes"], ["Y"], keepdims=keepdims)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                   [_out("Y", 4 if keepdims else 2)], [axes], 18)
    _compare(model, {"X": x}, atol=1e-4)


def test_reduce_opset18_no_axes_reduces_all() -> None:
    x = np.random.default_rng(2).random((2, 3, 4)).astype(np.float32)
    node = helper.make_node("ReduceMean", ["X"], ["Y"], keepdims=0)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                   [_out("Y", 0)], [], 18)
    _compare(model, {"X": x})


def test_layer_normalization_opset17() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 5, 8)).astype(np.float32)
    scale = numpy_helper.from_array(rng.random(8).astype(np.float32) + 0.5, "scale")
    bias = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "bias")
    node = helper.make_node("LayerNormalization", ["X", "scale", "bias"], ["Y"], axis=-1, epsilon=1e-5)
    model = _model(node, [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                   [_out("Y", 3)], [scale, bias], 17)
    _compare(model, {"X": x})


def test_unsupported_op_is_named() -> None:
    from converter.errors import UnsupportedError
    from converter.adapters import onnx2torch_adapter

    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, (2, 3))
    node = helper.make_node("Det", ["X"], ["Y"], name="my_det")
    model = _model(node, [x], [_out("Y", 0)], [], 17)
    with pytest.raises(UnsupportedError, match="Det at opset 17.*my_det"):
        onnx2torch_adapter.convert(model)
