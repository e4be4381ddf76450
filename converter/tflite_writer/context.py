"""The walk over a functional Keras 3 model: each node, in the order Keras itself runs them, is handed to its
registered handler, which reads the node's Keras tensors / constants and emits TFLite operators into a
:class:`~converter.tflite_writer.graph.Graph`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.tflite_writer.graph import Graph, WriterRefused


class WriteContext:
    """The graph being written and the Keras-tensor -> TFLite-tensor map."""

    def __init__(self) -> None:
        self.graph = Graph()
        self._ids: dict[int, int] = {}
        self.node: Any = None  # the node being written (for names)

    # ---- Keras tensors ------------------------------------------------------------------------------------------

    @staticmethod
    def is_tensor(value: Any) -> bool:
        import keras

        return isinstance(value, keras.KerasTensor)

    def get(self, value: Any, like: Any = None) -> int:
        """The TFLite tensor of a Keras tensor, or a constant for a Python / NumPy value (in ``like``'s dtype
        when it is a plain Python number, as Keras' own type promotion keeps the tensor's dtype)."""
        if self.is_tensor(value):
            return self._ids[id(value)]
        if isinstance(value, (bool, int, float)) and like is not None:
            return self.graph.const(np.asarray(value, dtype=self.dtype(like)))
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        if array.dtype == np.int64:
            array = array.astype(np.int32)
        return self.graph.const(array)

    def dtype(self, value: Any) -> str:
        if self.is_tensor(value):
            return str(value.dtype)
        if isinstance(value, (int, float, bool)):
            return "float32" if isinstance(value, float) else "int32"
        return str(np.asarray(value).dtype)

    def bind(self, kt: Any, index: int) -> None:
        """``kt`` is computed by the TFLite tensor ``index`` (an op that changes nothing, such as Identity)."""
        self._ids[id(kt)] = index

    def out(self, kt: Any) -> int:
        """A new TFLite tensor for the Keras output tensor ``kt``."""
        index = self.graph.tensor(self._name(kt), tuple(kt.shape), str(kt.dtype))
        self._ids[id(kt)] = index
        return index

    def temp(self, shape: Sequence[int | None], dtype: str = "float32") -> int:
        """An intermediate tensor of a multi-operator lowering."""
        return self.graph.tensor(f"{self._prefix()}/t{len(self.graph.tensors)}", tuple(shape), dtype)

    def weight(self, array: Any, suffix: str) -> int:
        """A weight of the current layer as a constant tensor (written once, never shared)."""
        array = np.ascontiguousarray(np.asarray(array))
        return self.graph.tensor(f"{self._prefix()}/{suffix}", array.shape, array.dtype, array)

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options: Any = None) -> None:
        self.graph.op(name, inputs, outputs, options)

    def options(self, kind: str, **fields: Any) -> Any:
        return self.graph.options(kind, **fields)

    def _prefix(self) -> str:
        return getattr(getattr(self.node, "operation", None), "name", "op")

    def _name(self, kt: Any) -> str:
        return f"{self._prefix()}/{kt.name}"


def node_args(node: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def refuse(node: Any, why: str) -> WriterRefused:
    op = node.operation
    return WriterRefused(f"{type(op).__name__} ({op.name}): {why}")


def write_model(model: Any, path: Path, input_names: Sequence[str], output_names: Sequence[str]) -> int:
    """Write ``model`` to ``path``; returns the number of TFLite operators. Raises :class:`WriterRefused` (before
    writing anything) for a node it cannot express."""
    from converter.tflite_writer.registry import load_all

    handlers = load_all()
    ctx = WriteContext()
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
        ctx.node = node
        handlers[type(node.operation).__name__](ctx, node)
    inputs = [(name, ctx.get(kt)) for name, kt in zip(input_names, model.inputs)]
    outputs = [(name, ctx.get(kt)) for name, kt in zip(output_names, model.outputs)]
    if len({i for _, i in outputs}) < len(outputs) or {i for _, i in outputs} & {i for _, i in inputs}:
        raise WriterRefused("an output that is an input or another output")
    for name, index in outputs:
        ctx.graph.tensors[index].name = name
    ctx.graph.write(path, inputs, outputs)
    return len(ctx.graph.operators)
