"""The Keras -> PyTorch speed-ups change how work is done, never what comes out: the lean freeze and the skipped
Const proto updates give tf2onnx's own ONNX graph, onnxsim on a file path gives the same model as on a
``ModelProto``, and shape inference without the weights' data gives ``infer_shapes``' own answer."""
from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np
import pytest


def _canonical(path: Path) -> str:
    """The graph with each initializer named by its content and tf2onnx's generated-name counters (``__17``)
    dropped: the counter is process-global, so it runs on from one export to the next, and the one constant
    tf2onnx keeps of several equal ones (BN epsilons, Relu6 bounds) is picked by it. Node order is dropped too
    (independent nodes are sorted by name); the inputs and outputs of each node keep the structure."""
    import re

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    names = {i.name: hashlib.sha1(repr((list(i.dims), i.data_type)).encode()
                                  + numpy_helper.to_array(i).tobytes()).hexdigest() for i in model.graph.initializer}
    nodes = [(n.op_type, n.name, [names.get(x, x) for x in n.input], list(n.output),
              [a.SerializeToString() for a in n.attribute]) for n in model.graph.node]
    def plain(o: object) -> str:
        return re.sub(r"__\d+", "__N", repr(o))

    # sorted: tf2onnx's topological sort orders independent nodes by name, counters included
    return plain((sorted(plain(n) for n in nodes), sorted(names.values()), list(model.graph.input),
                  list(model.graph.output)))


@pytest.mark.parametrize("name", ["cnn", "transformer_block"])
def test_lean_export_gives_tf2onnx_own_graph(name: str, keras_files: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Freezing straight to a GraphDef and leaving Const NodeProtos alone: the same nodes, attributes, inputs,
    outputs and weights as tf2onnx's own ``from_function`` and ``update_proto`` (the memory workarounds off)."""
    from converter.adapters import keras_load, tf_onnx, tf_onnx_lean

    from tf2onnx import tfonnx

    model = keras_load.load_keras(str(keras_files[name]), trust_code=False)
    sigs = tf_onnx.keras_signature(model, {})
    resolve = tfonnx.resolve_functions
    lean = tf_onnx.keras_to_onnx(model, sigs, tmp_path / "lean.onnx")
    assert tfonnx.resolve_functions is resolve  # restored after the export
    monkeypatch.setattr(tf_onnx_lean, "lean_tf2onnx", contextlib.nullcontext)
    plain = tf_onnx.keras_to_onnx(model, sigs, tmp_path / "plain.onnx")
    assert lean.notes == plain.notes
    assert _canonical(lean.path) == _canonical(plain.path)


def _shape_model(tmp_path: Path) -> Path:
    """A dynamic-batch graph with large weights (MatMul, Conv) and shape arithmetic onnxsim folds
    (Shape -> Gather -> Concat -> Reshape)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8, 3, 3)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(rng.standard_normal((16 * 6 * 6, 300)).astype(np.float32), "fc_w"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([-1], np.int64), "minus_one")]
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["c"], pads=[0, 0, 0, 0]),
             helper.make_node("Shape", ["c"], ["s"]),
             helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
             helper.make_node("Concat", ["n", "minus_one"], ["shape"], axis=0),
             helper.make_node("Reshape", ["c", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "fc_w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 300])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "shapes.onnx"
    onnx.save(model, str(path))
    return path


def test_simplify_from_path_equals_simplify_of_proto(tmp_path: Path) -> None:
    import onnx

    from converter.adapters import onnx2torch_adapter

    path = _shape_model(tmp_path)
    from_proto, _ = onnx2torch_adapter.simplify(onnx.load(str(path)), {"x": (2, 8, 8, 8)})
    from_path, _ = onnx2torch_adapter.simplify(path, {"x": (2, 8, 8, 8)})
    assert from_path.SerializeToString() == from_proto.SerializeToString()
    assert "Reshape" in [n.op_type for n in from_path.graph.node]


def test_lean_shape_inference_equals_infer_shapes(tmp_path: Path) -> None:
    import onnx
    from onnx.shape_inference import infer_shapes

    from converter.adapters.onnx_lean import LARGE_ELEMENTS, infer_shapes_lean

    model = onnx.load(str(_shape_model(tmp_path)))
    assert any(np.prod(i.dims) > LARGE_ELEMENTS for i in model.graph.initializer)  # the lean path is taken
    before = [i.SerializeToString() for i in model.graph.initializer]
    expected = infer_shapes(model).SerializeToString()
    got = infer_shapes_lean(model)
    assert got is model and got.SerializeToString() == expected
    assert [i.SerializeToString() for i in model.graph.initializer] == before
    out = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in model.graph.output}
    assert out == {"y": ["batch", 300]}


def test_lean_inference_inside_onnx2torch(tmp_path: Path) -> None:
    """onnx2torch converts with the lean inference (and gets its own entry point back afterwards); the module
    computes what onnxruntime computes."""
    import onnxruntime as ort
    import torch
    from onnx2torch import converter

    from converter.adapters import onnx2torch_adapter

    original = converter.safe_shape_inference
    path = _shape_model(tmp_path)
    simplified, _ = onnx2torch_adapter.simplify(path, {"x": (2, 8, 8, 8)})
    conv = onnx2torch_adapter.convert(simplified)
    assert converter.safe_shape_inference is original
    x = np.random.default_rng(1).standard_normal((2, 8, 8, 8)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = conv.module(torch.from_numpy(x)).detach().numpy()
    # outputs reach ~270: float32 sums in another order differ by ~1e-4 near zero (seen on an AVX-512 machine)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(np.abs(expected).max()))



def test_constant_pads_are_baked_for_torch_export(tmp_path: Path) -> None:
    """An opset-11+ Pad becomes onnx2torch's ``OnnxPadDynamic``, which reads its pads with ``.tolist()`` at run
    time (torch.export failed on ResNet50's pool1_pad with a data-dependent guard and the conversion fell over to
    the keras-native route, ~100 s more). With constant pads it is baked to a static pad call; the module still
    computes what onnxruntime computes, and torch.export keeps the batch dynamic."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    from converter.adapters import onnx2torch_adapter
    from converter.to_torch import artifacts

    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("Pad", ["r", "pads", "value"], ["p"], mode="constant"),
             helper.make_node("MaxPool", ["p"], ["y"], kernel_shape=[3, 3], strides=[2, 2])]
    inits = [numpy_helper.from_array(np.array([0, 0, 1, 0, 0, 0, 2, 1], np.int64), "pads"),
             numpy_helper.from_array(np.array(0.5, np.float32), "value")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4, 12, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "pad.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rng = np.random.default_rng(2)
    xs = [rng.standard_normal((b, 4, 12, 12)).astype(np.float32) for b in (2, 3)]
    conv = onnx2torch_adapter.convert(onnx.load(str(path)), [(torch.from_numpy(x),) for x in xs])
    kinds = {type(m).__name__ for m in conv.module.modules()}
    calls = {getattr(n.target, "__name__", "") for n in conv.module.graph.nodes if n.op == "call_function"}
    assert "OnnxPadDynamic" not in kinds and "pad_static" in calls, (kinds, calls)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in xs:
        np.testing.assert_allclose(conv.module(torch.from_numpy(x)).numpy(), session.run(None, {"x": x})[0],
                                   rtol=1e-6, atol=1e-6)
    program, dynamic, notes = artifacts.export_program(conv.module, (torch.from_numpy(xs[0]),), True)
    assert dynamic and not notes, notes
    np.testing.assert_allclose(program.module()(torch.from_numpy(xs[1])).numpy(), session.run(None, {"x": xs[1]})[0],
                               rtol=1e-6, atol=1e-6)
