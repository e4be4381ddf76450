"""What a handler sees while the model is walked: the graph being written, the Keras-tensor -> TFLite-tensor map,
and who reads each Keras tensor (for folding)."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from converter.tflite_writer.graph import Graph, WriterRefused


class WriteContext:
    """The graph being written and the Keras-tensor -> TFLite-tensor map."""

    def __init__(self, fp16: bool = False, capacity: int = 1 << 20) -> None:
        self.graph = Graph(capacity)
        self.fp16 = fp16  # float weights stored as float16, DEQUANTIZE'd to float32 at load (the TF converter's fp16)
        self._ids: dict[int, int] = {}
        self.node: Any = None  # the node being written (for names)
        self.consumers: dict[int, list[Any]] = {}  # id(Keras tensor) -> nodes reading it
        self.kept: set[int] = set()  # ids of Keras tensors that must stay visible (model outputs)
        self.absorbed: set[int] = set()  # ids of nodes already written by a producer that folded them in

    def absorb(self, kt: Any, accept: Callable[[Any], bool]) -> Any:
        """The one node reading ``kt`` when ``accept`` takes it (and ``kt`` is not a model output): the caller
        folds it into its own operator (batch norm into a convolution's weights, a ReLU into a fused activation)
        and the walk skips it. None otherwise."""
        users = self.consumers.get(id(kt), [])
        if len(users) != 1 or id(kt) in self.kept or not accept(users[0]):
            return None
        self.absorbed.add(id(users[0]))
        return users[0]

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

    def operand(self, value: Any, dtype: Any) -> int:
        """The TFLite tensor of a Keras tensor, or ``value`` as a constant of exactly ``dtype`` (an op's other
        operand decides it, unlike ``get``'s promotion rules for Python scalars)."""
        return self.get(value) if self.is_tensor(value) else self.graph.const(np.asarray(value, dtype=dtype))

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
        array = np.asarray(array)  # any strides: the flatbuffer copy lays it out (``graph.add_bytes``)
        name = f"{self._prefix()}/{suffix}"
        if not (self.fp16 and array.dtype == np.float32):
            return self.graph.tensor(name, array.shape, array.dtype, array)
        half = self.graph.tensor(f"{name}_fp16", array.shape, "float16", array.astype(np.float16))
        full = self.graph.tensor(name, array.shape, "float32")
        self.graph.op("DEQUANTIZE", [half], [full])
        return full

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options: Any = None) -> None:
        self.graph.op(name, inputs, outputs, options)

    def options(self, kind: str, **fields: Any) -> Any:
        return self.graph.options(kind, **fields)

    def _prefix(self) -> str:
        return getattr(getattr(self.node, "operation", None), "name", "op")

    def _name(self, kt: Any) -> str:
        return f"{self._prefix()}/{kt.name}"


def weights(variable: Any) -> np.ndarray:
    """A Keras variable's value as a NumPy array (one copy)."""
    value = getattr(variable, "value", variable)
    return np.asarray(value.numpy() if hasattr(value, "numpy") else value)


def node_args(node: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    return tuple(node.arguments.args), dict(node.arguments.kwargs)


def refuse(node: Any, why: str) -> WriterRefused:
    op = node.operation
    return WriterRefused(f"{type(op).__name__} ({op.name}): {why}")
