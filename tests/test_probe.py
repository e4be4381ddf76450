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
