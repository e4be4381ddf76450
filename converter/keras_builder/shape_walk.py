"""The probe without running the model: shapes of the values torch did not declare, and the values of the
constant subgraphs, from the shapes it did declare.

Why: ``shapes.probe`` runs the whole graph in onnxruntime at batch 2 and 3 to measure what the builder needs.
For a PyTorch export almost every shape is declared (value_info) and what is left is (a) constant subgraphs --
shape arithmetic ``Shape -> Slice -> Concat``, a zero bias ``Expand`` -- whose inputs are initializers and the
shapes of declared values, and (b) a few values in attention blocks (Reshape/Transpose/MatMul/Softmax) whose
shapes follow from their inputs' by the op's definition. Running the graph for those cost ViT-B/16 2-4 s of
``build-keras`` (serializing 330 MB, a session, two full forward passes) and ConvNeXt-T/ResNet-18 a session and
two forward passes for nothing. Here (a) runs alone, each ``Shape`` of a declared value fed as an input, and (b)
is computed from the shapes. Anything outside that returns None and the caller runs the graph as before, so
the result is the full run's whenever this answers.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.keras_builder.context import StaticShape

_SAME_SHAPE = {"Softmax", "LogSoftmax", "Identity", "Cast", "Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Sqrt",
               "Neg", "Abs", "Reciprocal"}
_BROADCAST = {"Add", "Sub", "Mul", "Div", "Pow"}
Runs = tuple[list[str], list[dict[str, tuple[int, ...]]], dict[str, object]]


def declared_outputs(model, inputs, declared: dict[str, StaticShape]) -> dict[str, StaticShape]:
    """The graph outputs' declared shapes, by the rule ``shapes._declared_shapes`` applies to value_info."""
    from converter.keras_builder.shapes import _declared_shapes

    view = _OutputsAsValueInfo(model)
    return {n: s for n, s in _declared_shapes(view, inputs).items() if n not in declared}


class _OutputsAsValueInfo:
    """``model`` seen with its graph outputs as its value_info (read-only; nothing is copied)."""

    def __init__(self, model) -> None:
        self.producer_name = model.producer_name
        self.graph = _GraphView(model.graph)


class _GraphView:
    def __init__(self, graph) -> None:
        self.input = graph.input
        self.value_info = graph.output


def without_activations(model, inputs, batches: tuple[int, ...], declared: dict[str, StaticShape],
                        wanted: list[str], keep: set[str], keep_both: set[str], run_opts: Any,
                        external_dir: str | None = None) -> Runs | None:
    """``shapes._run``'s answer (names, per-batch shapes, kept values) for the graph's outputs and ``wanted``,
    without running the graph; None when some value needs the activations. ``external_dir``: where the data of
    initializers stored outside the model is (the ones the constant subgraph reads are loaded into it)."""
    graph = model.graph
    known = dict(declared)
    known.update(declared_outputs(model, inputs, declared))
    for i in inputs:
        known[i.name] = StaticShape((None, *i.shape[1:]) if i.batch_dynamic else tuple(i.shape),
                                    (2, *i.shape[1:]) if i.batch_dynamic else tuple(i.shape))
    outputs = [o.name for o in graph.output]
    if any(o not in known or o in keep for o in outputs):
        return None
    at = {n: [_at_batch(s, b) for b in batches] for n, s in known.items()}
    inits = {i.name: i for i in graph.initializer}
    for name, init in inits.items():
        at.setdefault(name, [tuple(int(d) for d in init.dims)] * len(batches))
    consts = [w for w in wanted if w in keep]
    values_per_batch = _run_constants(model, consts, at, inits, batches, run_opts, external_dir)
    if values_per_batch is None:
        return None
    # As ``shapes._run`` keeps them: the first run's value, and both runs' for the shape-derived ones.
    kept: dict[str, object] = {n: (v[0], v[1]) if n in keep_both and len(v) == 2 else v[0]
                               for n, v in values_per_batch.items()}
    from onnx import TensorProto, numpy_helper

    for name, init in inits.items():  # a Reshape's target may be an initializer
        if len(init.dims) == 1 and init.data_type == TensorProto.INT64:
            values_per_batch.setdefault(name, [numpy_helper.to_array(init, external_dir or "")] * len(batches))
    for name, per in values_per_batch.items():
        at[name] = [tuple(np.shape(v)) for v in per]
    producer = {o: n for n in graph.node for o in n.output if o}
    for name in wanted:
        if name in at:
            continue
        node = producer[name]
        shape = _infer(node, at, values_per_batch, len(batches))
        if shape is None or len(node.output) != 1:
            return None
        at[name] = shape
    names = outputs + list(wanted)
    runs = [{n: at[n][k] for n in names} for k in range(len(batches))]
    return names, runs, kept


def _at_batch(shape: StaticShape, batch: int) -> tuple[int, ...]:
    """The concrete shape at ``batch``: each batch-following dim is ``factor * batch`` (``at_b1`` is at batch 2)."""
    return tuple(c if d is not None else (c // 2) * batch for d, c in zip(shape.dims, shape.at_b1))


def _run_constants(model, names: list[str], at: dict, inits: dict, batches: tuple[int, ...], run_opts: Any,
                   external_dir: str | None) -> dict[str, list[np.ndarray]] | None:
    """Run only the nodes ``names`` depend on, each Shape/Size of a value of known shape fed as an input; None
    when one depends on an activation's values."""
    if not names:
        return {}
    import onnx

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    graph_inputs = {i.name for i in graph.input}
    fed: dict[str, Any] = {}  # Shape/Size output -> its node
    nodes: set[int] = set()
    used_inits: set[str] = set()
    stack, seen = list(names), set()
    while stack:
        name = stack.pop()
        if name in seen or not name:
            continue
        seen.add(name)
        if name in inits:
            used_inits.add(name)
            continue
        node = producer.get(name)
        if node is None or name in graph_inputs:
            return None  # needs an input's values
        if node.op_type in ("Shape", "Size") and node.input[0] in at and node.input[0] not in inits:
            fed[name] = node
            continue
        if node.domain not in ("", "ai.onnx") or any(a.type == onnx.AttributeProto.GRAPH for a in node.attribute):
            return None
        nodes.add(id(node))
        stack.extend(node.input)
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    g = out.graph
    g.node.extend(n for n in graph.node if id(n) in nodes)
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    for name in used_inits:
        if uses_external_data(inits[name]):
            if not external_dir:
                return None
            load_external_data_for_tensor(inits[name], external_dir)
    g.initializer.extend(inits[n] for n in used_inits)
    for name in fed:
        g.input.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None))
    types = {vi.name: vi for vi in graph.value_info}
    for name in names:
        vi = types.get(name)
        if vi is not None and vi.type.tensor_type.elem_type:
            g.output.append(onnx.helper.make_tensor_value_info(name, vi.type.tensor_type.elem_type, None))
        else:
            g.output.append(onnx.helper.make_empty_tensor_value_info(name))
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(out.SerializeToString(), run_opts, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - the full run reports what is wrong with the graph
        return None
    per: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for k, _ in enumerate(batches):
        feeds = {n: _shape_value(node, at[node.input[0]][k]) for n, node in fed.items()}
        try:
            outs = sess.run(names, feeds)
        except Exception:  # noqa: BLE001
            return None
        for n, o in zip(names, outs):
            per[n].append(np.asarray(o))
    return per


def _shape_value(node, shape: tuple[int, ...]) -> np.ndarray:
    """What ``Shape`` (with its ``start``/``end``) or ``Size`` returns for a value of ``shape``."""
    if node.op_type == "Size":
        return np.asarray(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    attrs = {a.name: a.i for a in node.attribute}
    rank = len(shape)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    start, end = min(max(start, 0), rank), min(max(end, 0), rank)
    return np.asarray(shape[start:end], dtype=np.int64)


def _infer(node, at: dict, values: dict[str, list[np.ndarray]], n: int) -> list[tuple[int, ...]] | None:
    """The output shape at each batch by the op's definition, or None when not one of the few ops handled."""
    ins = [i for i in node.input]
    if any(i and i not in at for i in ins):
        return None
    op = node.op_type
    attrs = {a.name: a for a in node.attribute}
    try:
        if op in _SAME_SHAPE and len(ins) == 1:
            return list(at[ins[0]])
        if op in _BROADCAST and len(ins) == 2:
            return [tuple(np.broadcast_shapes(at[ins[0]][k], at[ins[1]][k])) for k in range(n)]
        if op == "Transpose":
            perm = list(attrs["perm"].ints) if "perm" in attrs else None
            return [tuple(s[p] for p in (perm or range(len(s))[::-1])) for s in at[ins[0]]]
        if op == "MatMul":
            return [_matmul(at[ins[0]][k], at[ins[1]][k]) for k in range(n)]
        if op == "Reshape" and len(ins) == 2 and ins[1] in values:
            allow_zero = attrs["allowzero"].i if "allowzero" in attrs else 0
            return [_reshape(at[ins[0]][k], values[ins[1]][k], allow_zero) for k in range(n)]
    except (ValueError, IndexError):
        return None
    return None


def _matmul(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    if len(a) < 2 or len(b) < 2 or a[-1] != b[-2]:
        raise ValueError("not a plain batched matmul")
    return (*np.broadcast_shapes(a[:-2], b[:-2]), a[-2], b[-1])


def _reshape(shape: tuple[int, ...], target: np.ndarray, allow_zero: int) -> tuple[int, ...]:
    dims = [int(d) for d in np.asarray(target).reshape(-1)]
    out = [shape[k] if d == 0 and not allow_zero else d for k, d in enumerate(dims)]
    total = int(np.prod(shape, dtype=np.int64))
    if out.count(-1) == 1:
        rest = int(np.prod([d for d in out if d != -1], dtype=np.int64))
        if rest == 0 or total % rest:
            raise ValueError("reshape does not divide")
        out[out.index(-1)] = total // rest
    if -1 in out or any(d < 0 for d in out) or int(np.prod(out, dtype=np.int64)) != total:
        raise ValueError("reshape size mismatch")
    return tuple(out)
