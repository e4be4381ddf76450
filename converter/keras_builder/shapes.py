"""Static shapes and constant values of every ONNX value, measured with onnxruntime.

Running the graph at two batch sizes tells, for each dimension of each intermediate value, whether it scales
with the batch (kept dynamic in Keras) or is fixed — robust across exporters, unlike symbolic shape inference
through Shape/Gather/Concat chains. The same run gives the values of constant subgraphs (folded for free).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from converter.errors import ModelFileError, ShapeError, UnsupportedError
from converter.keras_builder.context import StaticShape

_ORT_DTYPES = {
    1: np.float32, 2: np.uint8, 3: np.int8, 5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
    10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64,
}


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: tuple[int, ...]  # concrete, at the first batch size
    dtype: np.dtype
    batch_dynamic: bool


def graph_inputs(model, fixed: dict[str, tuple[int, ...]] | None) -> list[GraphInput]:
    """Inputs of the graph (initializers excluded) with concrete shapes; dynamic dims come from ``fixed``."""
    init_names = {i.name for i in model.graph.initializer}
    out: list[GraphInput] = []
    for vi in model.graph.input:
        if vi.name in init_names:
            continue
        tt = vi.type.tensor_type
        dtype = np.dtype(_ORT_DTYPES.get(tt.elem_type, np.float32))
        dims = [(d.dim_value if d.HasField("dim_value") else None) for d in tt.shape.dim]
        given = (fixed or {}).get(vi.name)
        if given is not None:
            if len(given) != len(dims):
                raise ShapeError(
                    f"input {vi.name!r} has rank {len(dims)} but --input-shape gives {len(given)} dims {given}"
                )
            for i, (d, g) in enumerate(zip(dims, given)):
                if d is not None and d != g and not (i == 0):
                    raise ShapeError(f"input {vi.name!r} dim {i} is {d} in the model but --input-shape says {g}")
        concrete = []
        for i, d in enumerate(dims):
            if given is not None:
                concrete.append(int(given[i]))
            elif d is not None:
                concrete.append(int(d))
            elif i == 0:
                concrete.append(2)
            else:
                raise ShapeError(
                    f"input {vi.name!r} has a dynamic dimension {i}; pass --input-shape {vi.name}=... to fix it"
                )
        out.append(GraphInput(vi.name, tuple(concrete), dtype, batch_dynamic=bool(dims) and dims[0] is None))
    return out


def _sample(inp: GraphInput, batch: int, rng: np.random.Generator) -> np.ndarray:
    shape = (batch, *inp.shape[1:]) if inp.batch_dynamic else inp.shape
    if np.issubdtype(inp.dtype, np.integer):
        return np.zeros(shape, dtype=inp.dtype)
    if inp.dtype == np.bool_:
        return np.ones(shape, dtype=bool)
    return rng.standard_normal(shape).astype(inp.dtype)


def probe(model, inputs: list[GraphInput]) -> tuple[dict[str, StaticShape], dict[str, np.ndarray]]:
    """Run every intermediate value at batch 2 and 3; return shapes and the values at batch 2."""
    import onnx

    probe_model = onnx.ModelProto()
    probe_model.CopyFrom(model)
    existing = {o.name for o in probe_model.graph.output}
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        types = {vi.name: vi for vi in inferred.graph.value_info}
    except Exception:  # noqa: BLE001 - inference is only a help for typing outputs
        types = {}
    for node in probe_model.graph.node:
        for name in node.output:
            if name and name not in existing:
                vi = types.get(name)
                if vi is not None:
                    clean = onnx.ValueInfoProto()
                    clean.name = name
                    clean.type.tensor_type.elem_type = vi.type.tensor_type.elem_type
                    probe_model.graph.output.append(clean)
                else:
                    probe_model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
                existing.add(name)
    surrogates: set[str] = set()
    try:
        names, runs = _run(probe_model, inputs)
    except _LayerNormRefused:
        # onnxruntime refuses LayerNormalization over a size-1 axis ("Size of X.shape[axis:] must be larger than
        # 1") although the graph is valid (torch and Keras return the bias). The probe only needs those nodes'
        # shapes, which Identity preserves; their values are then wrong, so they are never constant-folded.
        probe_model, surrogates = _layernorm_as_identity(probe_model)
        names, runs = _run(probe_model, inputs)
    shapes: dict[str, StaticShape] = {}
    for name in names:
        a = np.asarray(runs[0][name])
        if len(runs) == 2:
            b = np.asarray(runs[1][name])
            if a.ndim != b.ndim:
                raise UnsupportedError(f"value {name!r} changes rank with the batch size")
            dims = tuple(int(x) if x == y else None for x, y in zip(a.shape, b.shape))
        else:
            dims = tuple(int(x) for x in a.shape)
        shapes[name] = StaticShape(dims, tuple(int(x) for x in a.shape))
    for i in inputs:
        shape = (2, *i.shape[1:]) if i.batch_dynamic else i.shape
        dims = ((None, *i.shape[1:]) if i.batch_dynamic else i.shape)
        shapes[i.name] = StaticShape(tuple(dims), tuple(shape))
    return shapes, {k: v for k, v in runs[0].items() if k not in surrogates}


class _LayerNormRefused(Exception):
    pass


def _run(model, inputs: list[GraphInput]) -> tuple[list[str], list[dict[str, np.ndarray]]]:
    """All outputs of ``model`` at batch 2 and 3 (or at the fixed batch)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001
        msg = str(err).splitlines()[0]
        if "domain" in msg.lower() or "not a registered function" in msg.lower() or "NOT_IMPLEMENTED" in msg:
            raise UnsupportedError(f"onnxruntime cannot run this graph: {msg}") from err
        raise ModelFileError(f"onnxruntime cannot load the ONNX graph: {msg}") from err
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    dynamic = any(i.batch_dynamic for i in inputs)
    runs = []
    for batch in ((2, 3) if dynamic else (inputs[0].shape[0] if inputs and inputs[0].shape else 1,)):
        feeds = {i.name: _sample(i, batch, rng) for i in inputs}
        try:
            runs.append(dict(zip(names, sess.run(names, feeds))))
        except Exception as err:  # noqa: BLE001
            msg = str(err).splitlines()[0]
            if "LayerNormalization" in msg and "must be larger than 1" in msg:
                raise _LayerNormRefused(msg) from err
            raise ShapeError(f"the ONNX graph does not run on inputs {[(i.name, i.shape) for i in inputs]}: "
                             f"{msg}") from err
    return names, runs


def _layernorm_as_identity(model):
    """A copy where every LayerNormalization whose statistics outputs are unused becomes Identity(X)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    replaced: set[str] = set()
    for node in out.graph.node:
        if node.op_type == "LayerNormalization" and node.domain in ("", "ai.onnx") and not any(node.output[1:]):
            x, y = node.input[0], node.output[0]
            node.Clear()
            node.CopyFrom(onnx.helper.make_node("Identity", [x], [y], name=f"probe_identity_{y}"))
            replaced.add(y)
    return out, replaced
