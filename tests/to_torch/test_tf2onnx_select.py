"""``converter.adapters.tf_onnx_select``: tf2onnx's lowered integer select back to ``Where``, and Keras' negative-id
wrap before an embedding lookup dropped, each checked against onnxruntime on the graph before the rewrite."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _lookup_graph(vocabulary: int, wrap_by: int, swap: bool) -> object:
    """ids -> where(ids < 0, ids + wrap_by, ids) as tf2onnx lowers SelectV2 -> Gather(table, axis 0) -> Y."""
    table = np.random.default_rng(0).standard_normal((vocabulary, 4)).astype(np.float32)
    inits = [numpy_helper.from_array(table, "table"), numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
             numpy_helper.from_array(np.array(wrap_by, np.int32), "n")]
    picked, kept = (["nc", "wrapped"], ["ids", "cc"]) if not swap else (["wrapped", "nc"], ["cc", "ids"])
    nodes = [
        helper.make_node("Add", ["ids", "n"], ["wrapped"]),
        helper.make_node("Cast", ["ids"], ["ids_f"], to=TensorProto.FLOAT),
        helper.make_node("Less", ["ids_f", "zero"], ["neg"]),
        helper.make_node("Not", ["neg"], ["not_neg"]),
        helper.make_node("Cast", ["not_neg"], ["cc"], to=TensorProto.INT32),
        helper.make_node("Mul", kept, ["keep"]),
        helper.make_node("Cast", ["neg"], ["nc"], to=TensorProto.INT32),
        helper.make_node("Mul", picked, ["pick"]),
        helper.make_node("Add", ["pick", "keep"] if not swap else ["keep", "pick"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["Y"], axis=0),
    ]
    graph = helper.make_graph(nodes, "lookup", [helper.make_tensor_value_info("ids", TensorProto.INT32, [2, 5])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _run(model: object, ids: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"ids": ids})[0]


@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("wrap_by,drops", [(7, True), (6, False)])  # a wrap by another length is not the Gather's
def test_select_becomes_where_and_the_lookup_wraps_itself(swap: bool, wrap_by: int, drops: bool) -> None:
    from converter.adapters.tf_onnx_select import drop_index_wraps, restore_selects

    model = _lookup_graph(7, wrap_by, swap)
    ids = np.array([[0, 3, -1, -7, 6], [-2, 1, 5, -3, 2]], np.int32)
    if not drops:
        ids = np.clip(np.abs(ids), 0, 6)  # a wrap by 6 is wrong for negative ids: the graph itself stays as it is
    expected = _run(model, ids)
    assert restore_selects(model) == 1
    assert drop_index_wraps(model) == int(drops)
    ops = [n.op_type for n in model.graph.node]
    assert ops == (["Gather"] if drops else ["Add", "Cast", "Less", "Where", "Gather"]), ops
    np.testing.assert_array_equal(_run(model, ids), expected)


def test_keras_embedding_reads_negative_ids_as_keras_does(tmp_path: Path) -> None:
    """A Keras Embedding + Dense as ``.pt2``: the lookup is one indexing op (no wrap arithmetic), and negative ids
    (which Keras 3 reads from the end of the table) give Keras' outputs."""
    import torch

    from converter.conversion import ConvertOptions, convert
    from converter.frameworks import keras

    k = keras()
    k.utils.set_random_seed(0)
    inp = k.Input((6,), dtype="int32")
    out = k.layers.Dense(3)(k.layers.Embedding(50, 8)(inp))
    model = k.Model(inp, out)
    model.save(str(tmp_path / "emb.keras"))
    result = convert(str(tmp_path / "emb.keras"), ConvertOptions(output=str(tmp_path / "emb.pt2")))
    assert result.report.passed and result.report.route_name == "onnx", result.report.format_text()
    program = torch.export.load(str(tmp_path / "emb.pt2"))
    calls = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert not {"aten.less.Tensor", "aten.logical_not.default", "aten.where.self"} & set(calls), calls
    ids = np.array([[0, -1, -50, 49, 7, -8], [3, 2, 1, 0, -2, -3]], np.int32)
    with torch.inference_mode():
        got = program.module()(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(got, model(ids, training=False).numpy(), atol=1e-5, rtol=1e-5)
