"""Walk an ONNX graph in order and emit a functional Keras 3 model (see package docstring)."""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder.context import KT, BuildContext, StaticShape, scope_of
from converter.keras_builder.shapes import GraphInput, graph_inputs, probe
from converter.layout import Layout, channels_last_perm, identity, layout_for

# Inputs whose value only feeds shape arithmetic that the handler replaces with measured static shapes.
_SHAPE_ONLY_INPUTS = {"Reshape": {1}, "Expand": {1}, "Resize": {1, 2, 3}, "Upsample": {1}, "ConstantOfShape": {0}}
# Ops whose output is constant when their input's shape is static, whatever the input's values.
_SHAPE_OPS = {"Shape", "Size"}


@dataclass(frozen=True)
class BuildOptions:
    """``keep_layout``: keep channels-first inputs/outputs (NCHW) instead of the TF-native NHWC."""

    keep_layout: bool = False
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    model_name: str = "crossport_model"
    # Names of the source's trainable parameters: an elementwise scale by one of them (ConvNeXt's layer_scale)
    # becomes a trainable layer instead of a baked-in constant.
    parameter_names: frozenset[str] = frozenset()
    # Recurrent layers over at most this many (fixed) time steps are unrolled (0: never). Keras' symbolic loop
    # costs a while-loop iteration per step: a 32-step, 2-layer LSTM ran 1.7-2.1x slower in Keras/SavedModel than
    # in PyTorch at batch 1, 2.0 -> 1.5 ms unrolled. Not for TFLite: its converter fuses the loop into one
    # sequence-LSTM kernel (0.97 ms), and unrolled it was 2.0 ms (benchmarks/zoo.py, lstm_text).
    unroll_max_steps: int = 64
    # Where the model's external data files are, when it was loaded with ``load_external_data=False``: weights
    # are then mapped from the file, not copied (``converter.keras_builder.initializers``).
    external_data_dir: str | None = None


@dataclass(frozen=True)
class BuiltModel:
    model: Any  # keras.Model
    input_names: tuple[str, ...]  # ONNX names, in Keras input order
    output_names: tuple[str, ...]
    input_layouts: dict[str, Layout]
    output_layouts: dict[str, Layout]
    dynamic_batch: bool
    op_counts: dict[str, int]
    transposes: int
    merged_params: int = 0  # source parameters Keras holds summed (an LSTM's b_ih + b_hh is one Keras bias)
    layer_paths: dict[str, str] = field(default_factory=dict)  # Keras layer name -> PyTorch module path


def _sanitize(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "input"


def _needed_nodes(graph, consts: set[str]) -> set[int]:
    """Indices of nodes that contribute to an output, skipping shape-only inputs."""
    producer = {}
    for idx, node in enumerate(graph.node):
        for o in node.output:
            producer[o] = idx
    needed: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        name = stack.pop()
        idx = producer.get(name)
        if idx is None or idx in needed:
            continue
        needed.add(idx)
        node = graph.node[idx]
        skip = _SHAPE_ONLY_INPUTS.get(node.op_type, set())
        for i, inp in enumerate(node.input):
            if inp and i not in skip:
                stack.append(inp)
    return needed


def build_keras_model(model, options: BuildOptions) -> BuiltModel:
    """Translate ``model`` (an ``onnx.ModelProto``) into a Keras 3 functional model with the same weights."""
    import keras

    from converter.keras_builder import initializers
    from converter.keras_builder.registry import load_all

    handlers = load_all()
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    for o in model.opset_import:
        if o.domain not in ("", "ai.onnx"):
            used = [n for n in graph.node if n.domain == o.domain]
            if used:
                raise UnsupportedError(
                    f"op {used[0].op_type!r} of custom domain {o.domain!r} (node {used[0].name!r}) has no Keras equivalent"
                )

    inputs: list[GraphInput] = graph_inputs(model, options.input_shapes)
    # Probe before taking the weights out: when it runs the graph, its onnxruntime session holds its own copy.
    batch_values: dict[str, Any] = {}
    shapes, values = probe(model, inputs, _SHAPE_ONLY_INPUTS, frozenset(_SHAPE_OPS), batch_values,
                           options.external_data_dir)
    consts: dict[str, np.ndarray] = initializers.arrays(model, options.external_data_dir)
    for name, arr in consts.items():
        shapes.setdefault(name, StaticShape(tuple(arr.shape), tuple(arr.shape)))

    consumers: dict[str, list[Any]] = defaultdict(list)
    nodes_by_output: dict[str, Any] = {}
    for node in graph.node:
        for i in node.input:
            if i:
                consumers[i].append(node)
        for o in node.output:
            nodes_by_output[o] = node

    ctx = BuildContext(nodes_by_output, consts, shapes, consumers, opset, parameter_names=options.parameter_names,
                       unroll_max_steps=options.unroll_max_steps, batch_values=batch_values)

    keras_inputs = []
    input_layouts: dict[str, Layout] = {}
    for inp in inputs:
        rank = len(inp.shape)
        channels_last = (not options.keep_layout) and rank in (4, 5) and inp.dtype.kind == "f"
        perm = channels_last_perm(rank) if channels_last else identity(rank)
        actual = tuple(inp.shape[p] for p in perm)
        batch = (None, *actual[1:]) if inp.batch_dynamic else actual
        name = _sanitize(inp.name)
        ctx.used_names.add(name)
        tensor = keras.Input(batch_shape=batch, dtype=str(inp.dtype), name=name)
        keras_inputs.append(tensor)
        ctx.env[inp.name] = KT(tensor, perm)
        if inp.batch_dynamic and ctx.batch_source is None:
            ctx.batch_source = tensor
        if ctx.first_input is None:
            ctx.first_input = tensor
        input_layouts[inp.name] = layout_for(rank, channels_last) if (channels_last or rank in (4, 5)) else Layout.NONE

    needed = _needed_nodes(graph, set(consts))
    op_counts: dict[str, int] = defaultdict(int)
    for idx, node in enumerate(graph.node):
        if idx not in needed or (node.output and node.output[0] in ctx.skipped_nodes):
            continue
        op_counts[node.op_type] += 1
        live = [i for i in node.input if i]
        table_lookup = node.op_type == "Gather" and node.input[0] in options.parameter_names
        # A source parameter expanded to the batch (ViT's class token) or looked up goes through its handler,
        # which keeps it a trainable layer; other batch-dependent constants are materialized where used.
        uses_parameter = any(i in options.parameter_names for i in node.input)
        if all(o in batch_values for o in node.output if o) and any(node.output) and not uses_parameter:
            continue  # constant-derived but batch-dependent: materialized where used (BuildContext.get)
        skip = _SHAPE_ONLY_INPUTS.get(node.op_type, set())
        foldable = all(ctx.is_const(i) for n, i in enumerate(node.input) if i and n not in skip)
        if table_lookup:
            foldable = False  # a lookup into a trainable table (position embeddings) stays an Embedding layer
        if node.op_type in _SHAPE_OPS:
            # Its value is a constant when the probe saw it equal at both batch sizes (then it is in ``values``;
            # batch-dependent ones were set aside above): Shape(x)[1:] of a dynamic-batch x is.
            foldable = True
        if any(None in shapes[o].dims for o in node.output if o in shapes):
            foldable = False  # its size follows the batch (a class token expanded to it): not a constant
        if foldable and node.op_type != "Constant" and all(o in values for o in node.output if o):
            for o in node.output:
                if o:
                    ctx.env[o] = KT(np.asarray(values[o]), identity(np.asarray(values[o]).ndim))
            continue
        if node.op_type == "Constant":
            for o in node.output:
                ctx.env[o] = KT(np.asarray(values[o]), identity(np.asarray(values[o]).ndim))
            continue
        handler = handlers.get(node.op_type)
        if handler is None or node.domain not in ("", "ai.onnx"):
            raise UnsupportedError(_unsupported_message(node, opset))
        outs = handler(ctx, node)
        for name, kt in zip(node.output, outs):
            if name:
                ctx.env[name] = kt

    keras_outputs = []
    output_layouts: dict[str, Layout] = {}
    for out in graph.output:
        kt = ctx.get(out.name)
        if kt.is_const:
            raise UnsupportedError(f"output {out.name!r} is a constant that does not depend on the inputs")
        kt = ctx.materialize(kt)
        rank = kt.rank
        if not options.keep_layout and rank in (4, 5) and kt.perm == channels_last_perm(rank):
            output_layouts[out.name] = layout_for(rank, True)
        else:
            kt = ctx.to_identity(kt)
            output_layouts[out.name] = layout_for(rank, False) if rank in (4, 5) else Layout.NONE
        keras_outputs.append(keras.layers.Identity(name=ctx.layer_name(_FakeNode(out.name), suffix=""))(kt.value))

    _unique_operation_names(keras_outputs, ctx.used_names)
    kmodel = keras.Model(keras_inputs, keras_outputs, name=options.model_name)
    transposes = sum(1 for op in kmodel.operations if type(op).__name__ == "Transpose")
    return BuiltModel(
        model=kmodel,
        input_names=tuple(i.name for i in inputs),
        output_names=tuple(o.name for o in graph.output),
        input_layouts=input_layouts,
        output_layouts=output_layouts,
        dynamic_batch=any(i.batch_dynamic for i in inputs),
        merged_params=ctx.merged_params,
        op_counts=dict(op_counts),
        transposes=transposes,
        layer_paths=dict(ctx.layer_paths),
    )


def _unique_operation_names(outputs: list[Any], ours: set[str]) -> None:
    """Rename the ``keras.ops`` operations whose automatic name ("transpose_4", from Keras' per-process counter)
    equals a layer name the builder chose (an ONNX node or output named ``transpose_4``), so the functional model
    never refuses a name "used 2 times" (timm botnet26t_256). Layers keep the names the builder gave them."""
    import keras

    seen: set[int] = set()
    found: list[Any] = []
    stack = [t._keras_history.operation for t in outputs if getattr(t, "_keras_history", None)]
    while stack:
        op = stack.pop()
        if id(op) in seen:
            continue
        seen.add(id(op))
        found.append(op)
        for node in getattr(op, "_inbound_nodes", []):
            stack.extend(t._keras_history.operation for t in node.input_tensors
                         if getattr(t, "_keras_history", None) is not None)
    # Layers first: they keep their names; plain operations give way.
    found.sort(key=lambda op: not isinstance(op, keras.layers.Layer))
    taken: set[str] = set()
    all_names = {op.name for op in found} | ours
    for op in found:
        if op.name not in taken:
            taken.add(op.name)
            continue
        base, k = op.name, 1
        while f"{base}_{k}" in taken or f"{base}_{k}" in all_names:
            k += 1
        op.name = f"{base}_{k}"
        taken.add(op.name)


@dataclass
class _FakeNode:
    name: str
    op_type: str = "Output"
    metadata_props: tuple = ()


def _unsupported_message(node, opset: int) -> str:
    scope = scope_of(node)[0] if len(list(node.metadata_props)) else ""
    where = f" from layer {scope!r}" if scope else ""
    domain = node.domain or "ai.onnx"
    return (f"ONNX op {node.op_type!r} (domain {domain}, opset {opset}, node {node.name!r}{where}) has no Keras "
            f"translation in crossport yet")
