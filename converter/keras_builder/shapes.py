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


@dataclass(frozen=True)
class BatchValue:
    """A value computed from constants and shapes only, that differs with the batch size (an ``arange(batch)``,
    a mask broadcast to the batch): its values at batch 2 and 3. The builder folds what it can from these two
    (a constant repeated along the batch) instead of computing shapes at run time."""

    at_2: np.ndarray
    at_3: np.ndarray


def probe(model, inputs: list[GraphInput], shape_only_inputs: dict[str, set[int]] | None = None,
          shape_ops: frozenset[str] = frozenset({"Shape", "Size"}),
          batch_values: dict[str, BatchValue] | None = None, external_dir: str | None = None
          ) -> tuple[dict[str, StaticShape], dict[str, np.ndarray]]:
    """Shapes of every intermediate value (batch-dependent dims ``None``) and, at batch 2, the values of the ones
    that derive from constants only (what the builder folds). Constant-derived values that depend on the batch
    size go to ``batch_values`` (when given) instead.

    Memory: a value made a graph output is held by onnxruntime until the run ends, so probing every intermediate
    holds all activations of a batch-3 run at once (ViT-B/16: +3.7 GB RSS for 331 MB of weights). So:
    - shapes the PyTorch exporter declared (its value_info, from torch's own shape propagation: every dim an
      integer or the batch symbol, or ``k*batch``) are taken as given; only the rest are run;
    - of the values run, only constant-derived ones are kept, and the batch-3 run keeps shapes only;
    - the model is serialized with the extra outputs added in place and removed again, not copied first.
    Usually nothing is run at all: ``shape_walk.without_activations`` derives the rest from the declared shapes
    (the graph is run, as described above, only when it cannot).
    """
    graph = model.graph
    declared = _declared_shapes(model, inputs)
    const_derived, shape_derived = _const_derived(model, shape_only_inputs or {}, shape_ops)
    existing = {o.name for o in graph.output}
    wanted: list[str] = []
    for node in graph.node:
        for name in node.output:
            if name and name not in existing and (name not in declared or name in const_derived):
                wanted.append(name)
                existing.add(name)
    from converter.keras_builder.shape_walk import without_activations

    quick = without_activations(model, inputs, _batches(inputs), declared, wanted, const_derived, shape_derived,
                                _session_options(), external_dir)
    if quick is not None:
        return _collect(quick, inputs, declared, set(), batch_values)
    from converter.keras_builder.initializers import load_data

    load_data(model, external_dir)  # the run serializes the model: its weights must be inside it
    types = {vi.name: vi for vi in graph.value_info}
    if any(n not in types for n in wanted):
        try:
            import onnx

            inferred = onnx.shape_inference.infer_shapes(model)
            types.update({vi.name: vi for vi in inferred.graph.value_info if vi.name not in types})
            del inferred
        except Exception:  # noqa: BLE001 - inference is only a help for typing outputs
            pass
    surrogates: set[str] = set()
    try:
        names, runs, kept = _run(_with_outputs(model, wanted, types), inputs, const_derived, shape_derived)
    except _LayerNormRefused:
        # onnxruntime refuses LayerNormalization over a size-1 axis ("Size of X.shape[axis:] must be larger than
        # 1") although the graph is valid (torch and Keras return the bias). The probe only needs those nodes'
        # shapes, which Identity preserves; their values are then wrong, so they are never constant-folded.
        surrogate_model, surrogates = _layernorm_as_identity(model)
        names, runs, kept = _run(_with_outputs(surrogate_model, wanted, types), inputs, const_derived,
                                 shape_derived)
        del surrogate_model
    return _collect((names, runs, kept), inputs, declared, surrogates, batch_values)


def _collect(ran: tuple[list[str], list[dict[str, tuple[int, ...]]], dict[str, object]], inputs: list[GraphInput],
             declared: dict[str, StaticShape], surrogates: set[str], batch_values: dict[str, BatchValue] | None
             ) -> tuple[dict[str, StaticShape], dict[str, np.ndarray]]:
    """``probe``'s answer from the per-batch shapes and kept values (of a run, or of ``shape_walk``)."""
    names, runs, kept = ran
    shapes: dict[str, StaticShape] = dict(declared)
    for name in names:
        a_shape = runs[0][name]
        if len(runs) == 2:
            b_shape = runs[1][name]
            if len(a_shape) != len(b_shape):
                raise UnsupportedError(f"value {name!r} changes rank with the batch size")
            dims = tuple(int(x) if x == y else None for x, y in zip(a_shape, b_shape))
        else:
            dims = tuple(int(x) for x in a_shape)
        shapes[name] = StaticShape(dims, tuple(int(x) for x in a_shape))
    for i in inputs:
        shape = (2, *i.shape[1:]) if i.batch_dynamic else i.shape
        dims = ((None, *i.shape[1:]) if i.batch_dynamic else i.shape)
        shapes[i.name] = StaticShape(tuple(dims), tuple(shape))
    values: dict[str, np.ndarray] = {}
    for name, found in kept.items():
        if name in surrogates:
            continue
        if isinstance(found, tuple):
            a, b = found
            if a.shape != b.shape or not np.array_equal(a, b):
                if batch_values is not None:
                    batch_values[name] = BatchValue(a, b)
                continue
            found = a
        values[name] = found
    return shapes, values


def _with_outputs(model, names: list[str], types: dict):
    """``model`` serialized with ``names`` added as graph outputs (added in place, removed before returning)."""
    import onnx

    graph = model.graph
    before = len(graph.output)
    try:
        for name in names:
            vi = types.get(name)
            if vi is not None:
                clean = onnx.ValueInfoProto()
                clean.name = name
                clean.type.tensor_type.elem_type = vi.type.tensor_type.elem_type
                graph.output.append(clean)
            else:
                graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        return model.SerializeToString()
    finally:
        del graph.output[before:]


def _declared_shapes(model, inputs: list[GraphInput]) -> dict[str, StaticShape]:
    """Shapes torch.onnx.export recorded (value_info), where every dim is an integer, the batch symbol or an
    integer times it. Other producers' value_info is not trusted (user ONNX files can carry stale shapes)."""
    if model.producer_name != "pytorch":
        return {}
    batch_symbols = set()
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            batch_symbols.add(dims[0].dim_param)
    if not batch_symbols and any(i.batch_dynamic for i in inputs):
        return {}
    out: dict[str, StaticShape] = {}
    for vi in model.graph.value_info:
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims: list[int | None] = []
        concrete: list[int] = []
        for d in tt.shape.dim:
            if d.HasField("dim_value"):
                dims.append(int(d.dim_value))
                concrete.append(int(d.dim_value))
                continue
            factor = _batch_factor(d.dim_param, batch_symbols) if d.dim_param else None
            if factor is None:
                break
            dims.append(None)
            concrete.append(2 * factor)
        else:
            out[vi.name] = StaticShape(tuple(dims), tuple(concrete))
    return out


def _batch_factor(param: str, symbols: set[str]) -> int | None:
    """``batch`` -> 1, ``12*batch`` / ``batch*12`` -> 12; anything else -> None (probe it)."""
    parts = [p.strip() for p in param.split("*")]
    if len(parts) == 1:
        return 1 if parts[0] in symbols else None
    if len(parts) == 2:
        sym = [p for p in parts if p in symbols]
        num = [p for p in parts if p.isdigit()]
        if len(sym) == 1 and len(num) == 1:
            return int(num[0])
    return None


def _const_derived(model, shape_only_inputs: dict[str, set[int]], shape_ops: frozenset[str]) -> set[str]:
    """Values computed from initializers and Constants only (Shape/Size of anything count: the builder folds
    them when the shape is static) -- a superset of what the builder can fold."""
    known = {i.name for i in model.graph.initializer}
    from_shapes: set[str] = set()  # of those, the ones computed from a Shape/Size: they may follow the batch
    for node in model.graph.node:
        skip = shape_only_inputs.get(node.op_type, set())
        if node.op_type in shape_ops or node.op_type == "Constant" or all(
                i in known for n, i in enumerate(node.input) if i and n not in skip):
            known.update(o for o in node.output if o)
            if node.op_type in shape_ops or any(i in from_shapes for i in node.input):
                from_shapes.update(o for o in node.output if o)
    return known, from_shapes


class _LayerNormRefused(Exception):
    pass


def _run(serialized: bytes, inputs: list[GraphInput], keep: set[str], keep_both: set[str] = frozenset()
         ) -> tuple[list[str], list[dict[str, tuple[int, ...]]], dict[str, object]]:
    """Output names, each output's shape per run (batch 2 and 3, or the fixed batch), and the first run's values
    of the outputs in ``keep`` (the others are dropped as soon as their shape is read); for those also in
    ``keep_both``, a pair of both runs' values."""
    import onnxruntime as ort

    try:
        sess = ort.InferenceSession(serialized, _session_options(), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001
        msg = str(err).splitlines()[0]
        if "domain" in msg.lower() or "not a registered function" in msg.lower() or "NOT_IMPLEMENTED" in msg:
            raise UnsupportedError(f"onnxruntime cannot run this graph: {msg}") from err
        raise ModelFileError(f"onnxruntime cannot load the ONNX graph: {msg}") from err
    del serialized
    names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(0)
    shapes: list[dict[str, tuple[int, ...]]] = []
    values: dict[str, np.ndarray] = {}
    for k, batch in enumerate(_batches(inputs)):
        feeds = {i.name: _sample(i, batch, rng) for i in inputs}
        try:
            outs = sess.run(names, feeds)
        except Exception as err:  # noqa: BLE001
            msg = str(err).splitlines()[0]
            if "LayerNormalization" in msg and "must be larger than 1" in msg:
                raise _LayerNormRefused(msg) from err
            raise ShapeError(f"the ONNX graph does not run on inputs {[(i.name, i.shape) for i in inputs]}: "
                             f"{msg}") from err
        shapes.append({n: tuple(np.shape(o)) for n, o in zip(names, outs)})
        if k == 0:
            values = {n: np.asarray(o) for n, o in zip(names, outs) if n in keep}
        else:
            for n, o in zip(names, outs):
                if n in keep_both and n in values:
                    values[n] = (values[n], np.asarray(o))
        del outs
    return names, shapes, values


def _batches(inputs: list[GraphInput]) -> tuple[int, ...]:
    """The batch sizes the probe measures at: 2 and 3 for a dynamic batch, else the fixed one."""
    if any(i.batch_dynamic for i in inputs):
        return (2, 3)
    return (inputs[0].shape[0] if inputs and inputs[0].shape else 1,)


def _session_options():
    """No graph optimizations: the probe reads intermediate values exactly as the graph defines them."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return opts


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
