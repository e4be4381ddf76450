"""The walk over a functional Keras 3 model: each node, in the order Keras itself runs them, is handed to its
registered handler, which reads the node's Keras tensors / constants and emits TFLite operators into a
:class:`~converter.tflite_writer.graph.Graph`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.tflite_writer.context import WriteContext
from converter.tflite_writer.graph import WriterRefused


def write_model(model: Any, path: Path, input_names: Sequence[str], output_names: Sequence[str],
                fp16: bool = False) -> int:
    """Write ``model`` to ``path``; returns the number of TFLite operators. Raises :class:`WriterRefused` (before
    writing anything) for a node it cannot express. ``fp16``: layer weights stored as float16."""
    from converter.tflite_writer import ops_conv, ops_elementwise, ops_linear, ops_norm, ops_shape  # noqa: F401
    from converter.tflite_writer.registry import HANDLERS as handlers

    capacity = sum(int(np.prod(w.shape)) * np.dtype(str(w.dtype)).itemsize for w in model.weights)
    ctx = WriteContext(fp16=fp16, capacity=capacity // 2 if fp16 else capacity)
    nodes = [n for d in sorted(model._nodes_by_depth, reverse=True)  # noqa: SLF001 - the order Keras runs
             for n in model._nodes_by_depth[d] if n.operation is not None and not n.is_input]  # noqa: SLF001
    missing = sorted({type(n.operation).__name__ for n in nodes} - set(handlers))
    if missing:
        raise WriterRefused(f"no TFLite mapping for {', '.join(missing)}")
    for kt in model.inputs:
        if len(kt.shape) == 0:
            raise WriterRefused("a scalar model input")
        ctx.bind(kt, ctx.graph.tensor(kt.name, tuple(kt.shape), str(kt.dtype)))
    for node in nodes:
        for kt in node.input_tensors:
            ctx.consumers.setdefault(id(kt), []).append(node)
    ctx.kept = {id(kt) for kt in model.outputs}
    for node in nodes:
        if id(node) in ctx.absorbed:
            continue
        ctx.node = node
        try:
            handlers[type(node.operation).__name__](ctx, node)
        except WriterRefused:
            raise
        except Exception as err:  # noqa: BLE001 - a configuration no handler foresaw: the TF converter's turn
            op = node.operation
            raise WriterRefused(f"{type(op).__name__} ({op.name}): unexpected {type(err).__name__}: {err}") from err
    inputs = [(name, ctx.get(kt)) for name, kt in zip(input_names, model.inputs)]
    outputs = [(name, ctx.get(kt)) for name, kt in zip(output_names, model.outputs)]
    if len({i for _, i in outputs}) < len(outputs) or {i for _, i in outputs} & {i for _, i in inputs}:
        raise WriterRefused("an output that is an input or another output")
    for name, index in outputs:
        ctx.graph.tensors[index].name = name
    ctx.graph.write(path, inputs, outputs)
    return len(ctx.graph.operators)
