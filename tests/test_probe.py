"""The builder's shape probe (``converter.keras_builder.shapes.probe``) takes the shapes the PyTorch exporter
declared and runs only the rest, keeping values of constant-derived tensors only. It must give exactly the shapes a
full run of every intermediate at batch 2 and 3 gives (what it did before), and hold no activation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from converter.keras_builder.build import _SHAPE_ONLY_INPUTS, _SHAPE_OPS
from converter.keras_builder.shapes import graph_inputs, probe


def _export(name: str, path: Path) -> onnx.ModelProto:
    from converter.adapters import torch_onnx
    from fixtures import models

    model, example = models.build(name), models.example_inputs(name)
    outputs = model(*example)
    n_outputs = len(outputs) if isinstance(outputs, tuple) else 1
    torch_onnx.export(model, example, path, n_outputs=n_outputs, dynamic_batch=True)
    return onnx.load(str(path))


def _full_run_dims(model: onnx.ModelProto) -> dict[str, tuple[tuple[int | None, ...], tuple[int, ...]]]:
    """Every node output made a graph output, run at batch 2 and 3: the reference the probe must reproduce."""
    import onnxruntime as ort

    full = onnx.ModelProto()
    full.CopyFrom(model)
    have = {o.name for o in full.graph.output}
    for node in full.graph.node:
        for out in node.output:
            if out and out not in have:
                full.graph.output.append(onnx.helper.make_empty_tensor_value_info(out))
                have.add(out)
    sess = ort.InferenceSession(full.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    runs = []
    for batch in (2, 3):
        feeds = {i.name: np.random.default_rng(0).standard_normal(
            [batch if d.dim_param else d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}
        runs.append(dict(zip(names, (o.shape for o in sess.run(names, feeds)))))
    return {n: (tuple(a if a == b else None for a, b in zip(runs[0][n], runs[1][n])), tuple(runs[0][n]))
            for n in names}


@pytest.mark.parametrize("name", ["small_cnn", "transformer_block", "two_in_two_out"])
def test_probe_matches_a_full_run_and_keeps_no_activation(name: str, tmp_path: Path) -> None:
    model = _export(name, tmp_path / "m.onnx")
    assert model.producer_name == "pytorch"
    outputs_before = [o.name for o in model.graph.output]
    shapes, values = probe(model, graph_inputs(model, None), _SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS))
    assert [o.name for o in model.graph.output] == outputs_before  # the extra probe outputs were removed again
    reference = _full_run_dims(model)
    assert reference, "the fixture has intermediate values"
    for value, (dims, at_batch_2) in reference.items():
        assert (shapes[value].dims, shapes[value].at_b1) == (dims, at_batch_2), value
    batch_dependent = {n for n, (d, _) in reference.items() if None in d}
    assert batch_dependent and not (batch_dependent & set(values))  # activations are never held


def test_other_producers_are_probed_not_trusted(tmp_path: Path) -> None:
    """value_info written by anything but torch.onnx.export may be stale: every shape comes from a run."""
    model = _export("small_cnn", tmp_path / "m.onnx")
    reference = _full_run_dims(model)
    model.producer_name = "some-other-tool"
    for vi in model.graph.value_info:  # a stale declaration that a trusting probe would copy
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                d.dim_value = d.dim_value + 7
    shapes, _ = probe(model, graph_inputs(model, None), _SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS))
    for value, (dims, at_batch_2) in reference.items():
        assert (shapes[value].dims, shapes[value].at_b1) == (dims, at_batch_2), value


def _same(a: object, b: object) -> bool:
    from converter.keras_builder.shapes import BatchValue

    if isinstance(a, BatchValue) and isinstance(b, BatchValue):
        return _same(a.at_2, b.at_2) and _same(a.at_3, b.at_3)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


@pytest.mark.parametrize("name", ["small_cnn", "transformer_block", "two_in_two_out"])
def test_probe_without_running_the_graph_equals_the_run(name: str, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """``shape_walk`` answers for a PyTorch export (constants run alone, attention shapes by op definition) and
    gives exactly the shapes, folded values and batch-dependent values that running the graph gives."""
    from converter.keras_builder import shape_walk

    model = _export(name, tmp_path / "m.onnx")
    answered = []
    walk = shape_walk.without_activations
    monkeypatch.setattr(shape_walk, "without_activations", lambda *a: answered.append(walk(*a)) or answered[-1])
    quick_batch: dict = {}
    quick = probe(model, graph_inputs(model, None), _SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS), quick_batch)
    assert answered and answered[0] is not None, "the walk fell back to a run"
    monkeypatch.setattr(shape_walk, "without_activations", lambda *a: None)
    run_batch: dict = {}
    ran = probe(model, graph_inputs(model, None), _SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS), run_batch)
    assert list(quick[0].items()) == list(ran[0].items())
    assert quick[1].keys() == ran[1].keys() and all(_same(quick[1][k], ran[1][k]) for k in ran[1])
    assert quick_batch.keys() == run_batch.keys() and all(_same(quick_batch[k], run_batch[k]) for k in run_batch)


def test_walk_falls_back_when_a_value_needs_the_activations(tmp_path: Path) -> None:
    """A shape no rule here derives (an undeclared Conv output) means running the graph: None, not a guess."""
    from converter.keras_builder import shape_walk
    from converter.keras_builder.shapes import _batches, _const_derived, _declared_shapes, _session_options

    model = _export("small_cnn", tmp_path / "m.onnx")
    inputs = graph_inputs(model, None)
    declared = _declared_shapes(model, inputs)
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    declared.pop(conv.output[0])
    const, shape_derived = _const_derived(model, _SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS))
    assert shape_walk.without_activations(model, inputs, _batches(inputs), declared, [conv.output[0]], const,
                                          shape_derived, _session_options()) is None


@pytest.mark.parametrize("producer", ["pytorch", "some-other-tool"])
def test_weights_left_in_the_external_file_give_the_same_build(producer: str, tmp_path: Path) -> None:
    """The builder route loads the intermediate ONNX without its external data: initializers are views of the
    mapped file (same dtypes and values as ``to_array`` of the loaded model), and the probe -- the walk, or the
    full run that a non-PyTorch producer takes, which loads the data first -- answers as on the loaded model."""
    from onnx import numpy_helper

    from converter.keras_builder import initializers

    model = _export("transformer_block", tmp_path / "m.onnx")
    model.producer_name = producer
    onnx.save(model, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    full = onnx.load(str(tmp_path / "ext.onnx"))
    lean = onnx.load(str(tmp_path / "ext.onnx"), load_external_data=False)
    assert any(i.data_location == onnx.TensorProto.EXTERNAL for i in lean.graph.initializer)
    mapped = initializers.arrays(lean, str(tmp_path))
    loaded = {i.name: numpy_helper.to_array(i) for i in full.graph.initializer}
    assert mapped.keys() == loaded.keys()
    for name, value in loaded.items():
        assert mapped[name].dtype == value.dtype and np.array_equal(mapped[name], value), name
        assert not mapped[name].flags.writeable  # a view of the file, like to_array's view of the bytes
    args = (_SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS))
    want_batch: dict = {}
    want = probe(full, graph_inputs(full, None), *args, want_batch)
    got_batch: dict = {}
    got = probe(lean, graph_inputs(lean, None), *args, got_batch, str(tmp_path))
    assert list(got[0].items()) == list(want[0].items())
    assert got[1].keys() == want[1].keys() and all(_same(got[1][k], want[1][k]) for k in want[1])
    assert got_batch.keys() == want_batch.keys() and all(_same(got_batch[k], want_batch[k]) for k in want_batch)
