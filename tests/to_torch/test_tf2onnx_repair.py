"""The tf2onnx repairs on graphs shaped like tf2onnx's, from weights like a freshly built Keras model's: every
BatchNorm there has the same statistics (gamma 1, beta 0, mean 0, var 1), so values alone cannot say which conv a
folded BatchNorm belongs to, and its scale (1 - 5e-6) is within the comparison's tolerance of no scale at all."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from converter.adapters.tf_onnx_repair import SourceWeights, repair  # noqa: E402

EPS = 1.001e-5


def _fresh_bn(name: str, channels: int = 8) -> tuple:
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    return (ones, zeros, zeros, ones, (EPS,), name)


def _graph(shortcut: np.ndarray, main: np.ndarray, scale: float, main_name: str) -> onnx.ModelProto:
    """A shortcut conv as it is, then a conv with a BatchNorm folded into its kernel (grappler's
    ``merged_input``), both on the same input, added: ResNet50V2's block, as tf2onnx names it."""
    inits = [numpy_helper.from_array(shortcut, "model/b_shortcut_1/convolution/ReadVariableOp:0"),
             numpy_helper.from_array((main * np.float32(scale)).astype(np.float32),
                                     "model/b_conv_1/convolution/merged_input:0")]
    nodes = [helper.make_node("Conv", ["x", inits[0].name], ["s"], name="model/b_shortcut_1/convolution"),
             helper.make_node("Conv", ["x", inits[1].name], ["m"], name=main_name),
             helper.make_node("Add", ["s", "m"], ["y"], name="model/b_add_1/Add")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 6, 6])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _weights(shortcut: np.ndarray, main: np.ndarray, bn_names: tuple[str, ...]) -> SourceWeights:
    return SourceWeights(batchnorms=tuple(_fresh_bn(n) for n in bn_names),
                         convs=((shortcut, None, "b_shortcut"), (main, None, "b_conv")), zero_bias=(),
                         trainable=())


def test_a_fresh_batchnorm_goes_back_after_its_own_conv() -> None:
    rng = np.random.default_rng(0)
    shortcut, main = (rng.standard_normal((8, 8, 1, 1)).astype(np.float32) for _ in range(2))
    model = _graph(shortcut, main, 1 / np.sqrt(1 + EPS), "model/b_bn_1/batchnorm/mul_1")
    done = repair(model, _weights(shortcut, main, ("b_bn",)))
    assert (done.batchnorm, done.scaled_convs) == (1, 0)
    nodes = {n.name: n for n in model.graph.node}
    producer = {o: n for n in model.graph.node for o in n.output}
    assert producer[nodes["b_bn"].input[0]].name == "b_conv"  # not after the shortcut, whose kernel is as it is
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert np.array_equal(inits[nodes["b_conv"].input[1]], main)
    assert np.array_equal(inits[nodes["model/b_shortcut_1/convolution"].input[1]], shortcut)


def test_equal_batchnorms_are_told_apart_by_their_tf_names() -> None:
    rng = np.random.default_rng(1)
    shortcut, main = (rng.standard_normal((8, 8, 1, 1)).astype(np.float32) for _ in range(2))
    model = _graph(shortcut, main, 1 / np.sqrt(1 + EPS), "model/b_bn_1/batchnorm/mul_1")
    done = repair(model, _weights(shortcut, main, ("a_bn", "b_bn", "c_bn")))
    assert done.batchnorm == 1
    assert any(n.op_type == "BatchNormalization" and n.name == "b_bn" for n in model.graph.node)


def test_a_constant_output_scale_comes_back_as_a_mul() -> None:
    rng = np.random.default_rng(2)
    shortcut, main = (rng.standard_normal((8, 8, 1, 1)).astype(np.float32) for _ in range(2))
    model = _graph(shortcut, main, 0.17, "model/scale_1/mul")
    done = repair(model, _weights(shortcut, main, ()))
    assert (done.batchnorm, done.scaled_convs) == (0, 1)
    nodes = {n.name: n for n in model.graph.node}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert np.array_equal(inits[nodes["b_conv"].input[1]], main)
    mul = nodes["b_conv_scale"]
    assert mul.op_type == "Mul" and mul.input[0] == nodes["b_conv"].output[0]
    assert float(inits[mul.input[1]]) == pytest.approx(0.17, rel=1e-6)
