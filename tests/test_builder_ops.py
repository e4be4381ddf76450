"""One-node tests for every op the Keras builder registers, against onnxruntime (onnx2torch's habit).

Each case is a tiny ONNX graph around one op (a few carry a helper node where the op alone would give a constant
output); the Keras model the builder makes must match onnxruntime on seeded inputs, channels-last (the default)
and with --keep-layout. ``test_every_registered_op_has_a_case`` fails when a handler is registered without a case
here, so a new op cannot land untested."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from converter.keras_builder.registry import load_all
from converter.layout import Layout, channels_last_perm

R = np.random.default_rng(0)


def _f(*shape: int) -> np.ndarray:
    return R.standard_normal(shape).astype("float32")


@dataclass(frozen=True)
class Case:
    op: str
    inputs: dict[str, np.ndarray]  # graph inputs and their test values
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    node_inputs: tuple[str, ...] | None = None  # default: inputs then inits, in order
    attrs: dict[str, Any] = field(default_factory=dict)
    outputs: int = 1
    extra: tuple = ()  # (op, inputs, outputs, attrs) helper nodes run after the op under test
    opset: int = 18
    tol: float = 1e-5
    dynamic_batch: bool = False  # graph inputs get a symbolic batch dimension
    id: str = ""


X4 = _f(2, 3, 8, 8)
X3 = _f(2, 4, 6)
X2 = _f(2, 5)
POS = np.abs(_f(2, 3, 4)) + 0.1


def _unary(op: str, x: np.ndarray = X3, **attrs: Any) -> Case:
    return Case(op, {"x": x}, attrs=attrs, id=op)


def _binary(op: str, b: np.ndarray | None = None, x: np.ndarray = X3) -> Case:
    return Case(op, {"x": x}, {"b": _f(*x.shape[1:]) if b is None else b}, id=op)


def _int(*shape: int, high: int = 5) -> np.ndarray:
    return R.integers(0, high, shape).astype("int64")


def _bool(*shape: int) -> np.ndarray:
    return R.integers(0, 2, shape).astype(bool)


def _lstm_weights(hidden: int, inp: int, gates: int, dirs: int) -> dict[str, np.ndarray]:
    return {"W": _f(dirs, gates * hidden, inp) * 0.5, "R": _f(dirs, gates * hidden, hidden) * 0.5,
            "B": _f(dirs, 2 * gates * hidden) * 0.1}


CASES: list[Case] = [
    *[_unary(op) for op in ("Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "Erf", "Exp", "Neg", "Abs", "Sin",
                            "Cos", "Floor", "Ceil", "Sign", "HardSwish", "Identity")],
    Case("Gelu", {"x": X3}, opset=20, id="Gelu"),
    _unary("Log", POS), _unary("Sqrt", POS), _unary("Reciprocal", POS),
    Case("Gelu", {"x": X3}, attrs={"approximate": "tanh"}, opset=20, id="Gelu-tanh"),
    _unary("LeakyRelu", alpha=0.2), _unary("Elu", alpha=0.7), _unary("HardSigmoid", alpha=0.3, beta=0.4),
    Case("Dropout", {"x": X3}, id="Dropout"),
    Case("Clip", {"x": X3}, {"lo": np.array(-0.5, "float32"), "hi": np.array(0.7, "float32")}, id="Clip"),
    Case("Clip", {"x": X3}, {"lo": np.array(0.0, "float32"), "hi": np.array(6.0, "float32")}, id="Clip-relu6"),
    *[_binary(op) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Equal", "Greater", "Less",
                             "GreaterOrEqual", "LessOrEqual")],
    Case("Add", {"x": X4, "y": _f(2, 3, 8, 8)}, id="Add-two-tensors"),
    Case("Pow", {"x": POS}, {"b": np.array(1.5, "float32")}, id="Pow"),
    Case("Mod", {"x": _int(2, 6, high=20)}, {"b": np.array(7, "int64")}, id="Mod"),
    *[Case(op, {"x": _bool(2, 6), "y": _bool(2, 6)}, id=op) for op in ("And", "Or", "Xor")],
    Case("Not", {"x": _bool(2, 6)}, id="Not"),
    Case("IsNaN", {"x": np.where(X3 > 0.5, np.nan, X3).astype("float32")}, id="IsNaN"),
    Case("IsInf", {"x": np.where(X3 > 0.8, np.inf, np.where(X3 < -0.8, -np.inf, X3)).astype("float32")}, id="IsInf"),
    Case("IsInf", {"x": np.where(X3 > 0.8, np.inf, np.where(X3 < -0.8, -np.inf, X3)).astype("float32")},
         attrs={"detect_negative": 0}, id="IsInf-positive"),
    Case("Where", {"c": _bool(2, 4, 6), "x": X3, "y": _f(2, 4, 6)}, id="Where"),
    Case("Cast", {"x": X3 * 5}, attrs={"to": 6}, id="Cast"),
    # convolution, normalization, pooling
    Case("Conv", {"x": X4}, {"w": _f(5, 3, 3, 3), "b": _f(5)}, attrs={"pads": [1, 1, 1, 1]}, id="Conv"),
    Case("Conv", {"x": X4}, {"w": _f(6, 1, 3, 3)}, attrs={"group": 3, "strides": [2, 2]}, id="Conv-depthwise"),
    Case("Conv", {"x": X4}, {"w": _f(5, 3, 3, 3)},
         attrs={"strides": [2, 2], "dilations": [2, 2], "pads": [2, 2, 1, 1]}, id="Conv-strided-dilated"),
    Case("Conv", {"x": X3}, {"w": _f(5, 4, 3)}, attrs={"strides": [2], "dilations": [2]}, id="Conv1d-strided-dilated"),
    Case("ConvTranspose", {"x": X4}, {"w": _f(3, 4, 3, 3), "b": _f(4)},
         attrs={"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}, id="ConvTranspose"),
    Case("BatchNormalization", {"x": X4}, {"s": _f(3), "bb": _f(3), "m": _f(3), "v": np.abs(_f(3)) + 0.5},
         id="BatchNormalization"),
    Case("InstanceNormalization", {"x": X4}, {"s": _f(3), "bb": _f(3)}, attrs={"epsilon": 1e-3},
         id="InstanceNormalization"),
    Case("InstanceNormalization", {"x": X3}, {"s": _f(4), "bb": _f(4)}, id="InstanceNormalization-1d"),
    Case("MaxPool", {"x": X4}, attrs={"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, id="MaxPool"),
    Case("MaxPool", {"x": _f(2, 3, 9, 9)}, attrs={"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
         id="MaxPool-ceil-partial-window"),
    Case("MaxPool", {"x": X4}, attrs={"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1],
                                      "ceil_mode": 1}, id="MaxPool-ceil-stride1-same"),
    Case("MaxPool", {"x": _f(2, 3, 10, 10)}, attrs={"kernel_shape": [3, 3], "strides": [2, 2],
                                                    "pads": [1, 1, 1, 1], "ceil_mode": 1}, id="MaxPool-ceil-padded"),
    Case("AveragePool", {"x": X4}, attrs={"kernel_shape": [2, 2], "strides": [2, 2]}, id="AveragePool"),
    Case("AveragePool", {"x": X4}, attrs={"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1},
         id="AveragePool-include-pad"),
    Case("GlobalAveragePool", {"x": X4}, id="GlobalAveragePool"),
    Case("GlobalMaxPool", {"x": X4}, id="GlobalMaxPool"),
    # linear algebra, embeddings
    Case("Gemm", {"x": X2}, {"w": _f(7, 5), "c": _f(7)}, attrs={"transB": 1}, id="Gemm"),
    Case("MatMul", {"x": X3}, {"w": _f(6, 3)}, id="MatMul-dense"),
    Case("MatMul", {"x": X3, "y": _f(2, 6, 4)}, id="MatMul-two-tensors"),
    Case("LayerNormalization", {"x": X3}, {"s": _f(6), "bb": _f(6)}, attrs={"axis": -1, "epsilon": 1e-6},
         id="LayerNormalization"),
    Case("Gather", {"i": _int(2, 4, high=10)}, {"t": _f(10, 3)}, node_inputs=("t", "i"), id="Gather-embedding"),
    Case("Gather", {"x": X3}, {"i": np.array([2, 0, -1], "int64")}, attrs={"axis": 2}, id="Gather-constant-index"),
    # data movement
    Case("Reshape", {"x": X3}, {"s": np.array([2, 24], "int64")}, id="Reshape"),
    Case("Flatten", {"x": X4}, attrs={"axis": 1}, id="Flatten"),
    Case("Transpose", {"x": X3}, attrs={"perm": [0, 2, 1]}, id="Transpose"),
    Case("Concat", {"x": X3, "y": _f(2, 4, 2)}, attrs={"axis": 2}, id="Concat"),
    Case("Split", {"x": X3}, {"s": np.array([2, 4], "int64")}, attrs={"axis": 2}, outputs=2, id="Split"),
    Case("Slice", {"x": X3}, {"st": np.array([1, 0], "int64"), "en": np.array([3, 6], "int64"),
                              "ax": np.array([1, 2], "int64"), "sp": np.array([1, 2], "int64")}, id="Slice"),
    Case("Squeeze", {"x": _f(2, 1, 6)}, {"a": np.array([1], "int64")}, id="Squeeze"),
    Case("Unsqueeze", {"x": X3}, {"a": np.array([1], "int64")}, id="Unsqueeze"),
    Case("Softmax", {"x": X3}, attrs={"axis": 1}, id="Softmax"),
    Case("LogSoftmax", {"x": X3}, attrs={"axis": -1}, id="LogSoftmax"),
    *[Case(op, {"x": X3}, {"a": np.array([1], "int64")}, attrs={"keepdims": 0}, id=op)
      for op in ("ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd")],
    Case("ReduceMean", {"x": X4}, {"a": np.array([2, 3], "int64")}, id="ReduceMean-spatial"),
    Case("Pad", {"x": X4}, {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], "int64"), "v": np.array(0.5, "float32")},
         id="Pad"),
    Case("Pad", {"x": X4}, {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], "int64")}, attrs={"mode": "reflect"},
         id="Pad-reflect"),
    Case("Resize", {"x": X4}, {"roi": np.array([], "float32"), "sc": np.array([1, 1, 2, 2], "float32")},
         attrs={"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
         id="Resize-nearest"),
    Case("Resize", {"x": X4}, {"roi": np.array([], "float32"), "sc": np.array([1, 1, 2, 2], "float32")},
         attrs={"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, id="Resize-linear"),
    Case("Upsample", {"x": X4}, {"sc": np.array([1, 1, 2, 2], "float32")}, attrs={"mode": "nearest"}, opset=9,
         id="Upsample"),
    Case("Expand", {"x": _f(2, 1, 6)}, {"s": np.array([2, 4, 6], "int64")}, id="Expand"),
    Case("Expand", {"x": _f(2, 3, 1, 4)}, {"s": np.array([1, 3, 2, 4], "int64")}, dynamic_batch=True,
         id="Expand-batch-sized-tensor"),  # GQA's repeat_kv (HF Llama / Qwen2)
    # Shape/Size alone would give a constant output: one helper node uses the (folded) value with the input.
    Case("Shape", {"x": X3}, node_inputs=("x",),
         extra=(("Cast", ("out0",), ("c",), {"to": 1}), ("ReduceSum", ("c",), ("s",), {"keepdims": 0}),
                ("Mul", ("x", "s"), ("out_final",), {})), id="Shape"),
    Case("Size", {"x": X3}, node_inputs=("x",),
         extra=(("Cast", ("out0",), ("c",), {"to": 1}), ("Mul", ("x", "c"), ("out_final",), {})), id="Size"),
    Case("Einsum", {"x": _f(2, 4, 3, 5), "y": _f(2, 4, 5, 6)}, attrs={"equation": "bhqd,bhdk->bhqk"}, id="Einsum"),
    Case("Einsum", {"x": X3}, {"w": _f(6, 7)}, attrs={"equation": "bsd,de->bse"}, id="Einsum-weight"),
    Case("Trilu", {"x": _f(2, 5, 5)}, {"k": np.array(1, "int64")}, attrs={"upper": 0}, id="Trilu"),
    Case("CumSum", {"x": X3}, {"a": np.array(1, "int64")}, id="CumSum"),
    Case("CumSum", {"x": X3}, {"a": np.array(2, "int64")}, attrs={"exclusive": 1, "reverse": 1},
         id="CumSum-exclusive-reverse"),
    Case("Tile", {"x": X3}, {"r": np.array([1, 2, 3], "int64")}, id="Tile"),
    Case("ArgMax", {"x": X3}, attrs={"axis": 2, "keepdims": 0}, id="ArgMax"),
    Case("ArgMin", {"x": X4}, attrs={"axis": 1}, id="ArgMin"),
    Case("GatherElements", {"x": X3}, {"i": _int(2, 4, 3, high=6)}, attrs={"axis": 2}, id="GatherElements"),
    Case("GatherElements", {"i": _int(2, 3, high=4)}, {"t": _f(4, 5)}, node_inputs=("t", "i"),
         id="GatherElements-constant-data-smaller-index"),
    # GatherND with batch-row indices needs a dynamic batch: covered in test_gather_nd_batch_rows below.
    # recurrent
    Case("LSTM", {"x": _f(5, 2, 3)}, _lstm_weights(4, 3, 4, 1), attrs={"hidden_size": 4}, outputs=3, id="LSTM"),
    Case("LSTM", {"x": _f(5, 2, 3)}, {**_lstm_weights(4, 3, 4, 2), "h0": _f(2, 2, 4), "c0": _f(2, 2, 4)},
         node_inputs=("x", "W", "R", "B", "", "h0", "c0"),
         attrs={"hidden_size": 4, "direction": "bidirectional"}, outputs=3, id="LSTM-bidirectional-constant-state"),
    Case("GRU", {"x": _f(5, 2, 3)}, _lstm_weights(4, 3, 3, 1), attrs={"hidden_size": 4, "linear_before_reset": 1},
         outputs=2, id="GRU"),
]
# Ops whose one-node case lives in its own test below (it needs a dynamic batch).
SEPARATE = {"GatherND"}


def _model(case: Case, batch_dynamic: bool = False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    node_inputs = case.node_inputs or (*case.inputs, *case.inits)
    if case.op == "Clip":
        node_inputs = ("x", "lo", "hi")
    outs = [f"out{k}" for k in range(case.outputs)]
    nodes = [helper.make_node(case.op, list(node_inputs), outs, **case.attrs)]
    for op, ins, o, attrs in case.extra:
        nodes.append(helper.make_node(op, list(ins), list(o), **attrs))
    final = ["out_final"] if case.extra else outs

    def info(name: str, arr: np.ndarray):
        elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
        dims: list[Any] = list(arr.shape)
        if batch_dynamic and dims:
            dims[0] = "N"
        return helper.make_tensor_value_info(name, elem, dims)

    graph = helper.make_graph(
        nodes, case.id, [info(n, a) for n, a in case.inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in final],
        [numpy_helper.from_array(a, n) for n, a in case.inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", case.opset)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    return model, final


def _run_both(model, outputs: list[str], feeds: dict[str, np.ndarray], keep_layout: bool):
    import onnxruntime as ort

    from converter.keras_builder import BuildOptions, build_keras_model

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = sess.run(outputs, feeds)
    built = build_keras_model(model, BuildOptions(keep_layout=keep_layout))
    args = []
    for name in built.input_names:
        arr = feeds[name]
        if built.input_layouts[name] in (Layout.NHWC, Layout.NDHWC):
            arr = np.transpose(arr, channels_last_perm(arr.ndim))
        args.append(arr)
    got = built.model(args if len(args) > 1 else args[0])
    got = got if isinstance(got, (list, tuple)) else [got]
    results = []
    for name, value in zip(built.output_names, got):
        arr = np.asarray(value)
        if built.output_layouts[name] in (Layout.NHWC, Layout.NDHWC):
            arr = np.transpose(arr, np.argsort(channels_last_perm(arr.ndim)))
        results.append(arr)
    return expected, results, built


def test_every_registered_op_has_a_case() -> None:
    missing = sorted(set(load_all()) - {c.op for c in CASES} - SEPARATE)
    assert not missing, f"builder ops without a one-node test against onnxruntime: {missing}"


@pytest.mark.parametrize("keep_layout", [False, True], ids=["channels-last", "keep-layout"])
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_node_matches_onnxruntime(case: Case, keep_layout: bool) -> None:
    model, outputs = _model(case, case.dynamic_batch)
    expected, got, built = _run_both(model, outputs, dict(case.inputs), keep_layout)
    assert case.op in built.op_counts, built.op_counts
    for want, have in zip(expected, got):
        assert have.shape == want.shape, (have.shape, want.shape)
        if want.dtype == bool or np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(have.astype(want.dtype), want)
        else:
            np.testing.assert_allclose(have, want, atol=case.tol, rtol=case.tol)


def test_gather_nd_batch_rows() -> None:
    """``GatherND(mask, [row b, kv index])`` with a dynamic batch -- how exported attention reads its padding mask:
    Shape -> Range over the batch -> Unsqueeze/Expand -> Concat with constant kv indices."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kv = np.array([[0], [2], [3], [1]], "int64")  # (4, 1)
    nodes = [
        helper.make_node("Shape", ["mask"], ["shp"], start=0, end=1),
        helper.make_node("Squeeze", ["shp"], ["b"]),
        helper.make_node("Range", ["zero", "b", "one"], ["rows"]),
        helper.make_node("Unsqueeze", ["rows", "ax"], ["rows2"]),  # (B, 1)
        helper.make_node("Concat", ["shp", "four"], ["tshape"], axis=0),
        helper.make_node("Expand", ["rows2", "tshape"], ["rows3"]),  # (B, 4)
        helper.make_node("Unsqueeze", ["rows3", "last"], ["rows4"]),  # (B, 4, 1)
        helper.make_node("Concat", ["shp", "kvshape"], ["kshape"], axis=0),
        helper.make_node("Expand", ["kv", "kshape"], ["kvb"]),  # (B, 4, 1)
        helper.make_node("Concat", ["rows4", "kvb"], ["idx"], axis=-1),  # (B, 4, 2)
        helper.make_node("GatherND", ["mask", "idx"], ["out"]),
    ]
    inits = {"zero": np.array(0, "int64"), "one": np.array(1, "int64"), "ax": np.array([1], "int64"),
             "four": np.array([4], "int64"), "last": np.array([2], "int64"), "kv": kv,
             "kvshape": np.array([4, 1], "int64")}
    graph = helper.make_graph(nodes, "gnd", [helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 5, 3])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    feeds = {"mask": _f(3, 5, 3)}
    expected, got, built = _run_both(model, ["out"], feeds, keep_layout=True)
    assert "GatherND" in built.op_counts and built.dynamic_batch
    np.testing.assert_array_equal(got[0], expected[0])
    # The batch stays dynamic: another batch size gives the same rows.
    more = _f(5, 5, 3)
    np.testing.assert_array_equal(np.asarray(built.model(more)), more[:, kv[:, 0]])


def test_layer_names_never_collide_with_automatic_operation_names(tmp_path) -> None:
    """An ONNX node named like a Keras automatic name ("transpose_<n>") next to keras.ops transposes: every name
    in the model stays unique (timm botnet26t_256 failed with 'The name "transpose_4" is used 2 times')."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from converter.keras_builder import BuildOptions, build_keras_model

    nodes, prev = [], "x"
    for k in range(12):  # convs force NHWC; the Reshape needs NCHW back: real transposes with automatic names
        nodes.append(helper.make_node("Conv", [prev, "w"], [f"c{k}"], name=f"node_transpose_{k}", pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Reshape", [f"c{k}", "s"], [f"r{k}"], name=f"node_reshape_{k}"))
        nodes.append(helper.make_node("Reshape", [f"r{k}", "s4"], [f"transpose_{k}"], name=f"node_view_{k}"))
        prev = f"transpose_{k}"
    inits = {"w": _f(3, 3, 3, 3) * 0.3, "s": np.array([2, 3, 64], "int64"), "s4": np.array([2, 3, 8, 8], "int64")}
    graph = helper.make_graph(nodes, "names", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, n) for n, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    built = build_keras_model(onnx.shape_inference.infer_shapes(model), BuildOptions())
    names = [op.name for op in built.model.operations]
    assert len(names) == len(set(names))
    assert any(n.startswith("transpose_") for n in names)
    import keras

    built.model.save(str(tmp_path / "m.keras"))
    x = _f(2, 3, 8, 8).transpose(0, 2, 3, 1)
    again = keras.models.load_model(str(tmp_path / "m.keras"))
    np.testing.assert_allclose(np.asarray(again(x)), np.asarray(built.model(x)), atol=1e-6)


def test_layers_are_created_holding_their_weights() -> None:
    """``call_with_weights``: the variables hold exactly the given arrays (Dense, Conv, BatchNorm's moving
    statistics, LayerNorm, Embedding), the layer's config keeps its own initializers, a layer whose variables
    live in sub-layers gets them by ``set_weights``, and a wrong shape still raises as ``set_weights`` does."""
    import keras

    from converter.keras_builder.context import call_with_weights

    rng = np.random.default_rng(0)
    cases = [
        (keras.layers.Dense(3), [(4, 3), (3,)], (None, 4), {}),
        (keras.layers.Conv2D(2, 3), [(3, 3, 5, 2), (2,)], (None, 8, 8, 5), {}),
        (keras.layers.BatchNormalization(), [(5,)] * 4, (None, 8, 5), {"training": False}),
        (keras.layers.LayerNormalization(), [(6,), (6,)], (None, 2, 6), {}),
        (keras.layers.Bidirectional(keras.layers.SimpleRNN(2)), [(3, 2), (2, 2), (2,)] * 2, (None, 4, 3), {}),
    ]
    for layer, shapes, input_shape, kwargs in cases:
        weights = [rng.standard_normal(s).astype("float32") for s in shapes]
        twin = type(layer).from_config(layer.get_config())  # built the plain way: call, then set_weights
        twin(keras.Input(batch_shape=input_shape), **kwargs)
        twin.set_weights(weights)
        call_with_weights(layer, weights, keras.Input(batch_shape=input_shape), **kwargs)
        assert len(layer.weights) == len(weights), layer
        for v, w in zip(layer.weights, weights):
            np.testing.assert_array_equal(np.asarray(v), w)
        assert {**layer.get_config(), "name": ""} == {**twin.get_config(), "name": ""}
    table = rng.standard_normal((7, 4)).astype("float32")
    emb = keras.layers.Embedding(7, 4)
    call_with_weights(emb, [table], keras.Input(batch_shape=(None, 3), dtype="int32"))
    np.testing.assert_array_equal(np.asarray(emb.weights[0]), table)
    with pytest.raises(ValueError):
        call_with_weights(keras.layers.Dense(3), [np.zeros((5, 3), "float32"), np.zeros(3, "float32")],
                          keras.Input(batch_shape=(None, 4)))
