"""Which initializers of an ONNX graph are genuine weights (trainable) and which are constants.

ONNX does not say: a Conv kernel, a BatchNorm running mean, a Reshape target shape and an attention scale are all
initializers, and onnx2torch turns every one into a buffer (onnx2torch#194). Making every float initializer
trainable would let an optimizer move BatchNorm statistics, positional tables computed by the exporter, masks and
scales. We decide by *consumer*: a tensor is a weight when it feeds a slot that holds learned values --

- Conv / ConvTranspose: kernel and bias; Gemm: B and C; MatMul: a constant operand of rank >= 2;
- Add / Sub right after a Conv / ConvTranspose / MatMul / Gemm: the bias (Keras and torch.onnx write MatMul + Add);
- BatchNormalization: scale and B (its mean/var are statistics -> buffers);
- LayerNormalization / InstanceNormalization / GroupNormalization: scale and bias;
- Gather on data indices from a constant float matrix: an embedding table;
- LSTM / GRU / RNN: W, R and B; PRelu: the slope.

The initializer may reach that slot through layout-only ops (Identity, Transpose, Reshape, Cast, Unsqueeze,
Squeeze), as exporters often write a transposed kernel. Everything else stays a constant. The values found here are
the reference that ``converter.to_torch.trainable.assign_trainable`` matches against the converted module.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_WEIGHT_SLOTS: dict[str, tuple[int, ...]] = {
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "BatchNormalization": (1, 2),
    "LayerNormalization": (1, 2), "InstanceNormalization": (1, 2), "GroupNormalization": (1, 2),
    "LSTM": (1, 2, 3), "GRU": (1, 2, 3), "RNN": (1, 2, 3), "PRelu": (1,),
}
_LINEAR = ("Conv", "ConvTranspose", "MatMul", "Gemm")
_PASS_THROUGH = ("Identity", "Transpose", "Reshape", "Cast", "Unsqueeze", "Squeeze")


def weight_initializers(model: Any) -> dict[str, np.ndarray]:
    """Name -> value of the initializers that are genuine (trainable) weights."""
    from onnx import numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def source_initializer(name: str) -> str | None:
        """Follow layout-only ops back to an initializer."""
        for _ in range(8):
            if name in inits:
                return name
            node = producer.get(name)
            if node is None or node.op_type not in _PASS_THROUGH or not node.input:
                return None
            name = node.input[0]
        return None

    def is_float(name: str) -> bool:
        return numpy_helper.to_array(inits[name]).dtype.kind == "f"

    found: set[str] = set()

    def take(name: str) -> None:
        src = source_initializer(name) if name else None
        if src is not None and is_float(src):
            found.add(src)

    for node in graph.node:
        op, ins = node.op_type, list(node.input)
        if op in _WEIGHT_SLOTS:
            for k in _WEIGHT_SLOTS[op]:
                if k < len(ins):
                    take(ins[k])
        elif op == "MatMul":
            for name in ins:
                src = source_initializer(name)
                if src is not None and len(inits[src].dims) >= 2:
                    take(name)
        elif op in ("Add", "Sub") and len(ins) == 2:
            for k, name in enumerate(ins):
                other = producer.get(ins[1 - k])
                if other is not None and other.op_type in _LINEAR and source_initializer(name) is not None:
                    take(name)
        elif op == "Gather" and len(ins) == 2:
            table = source_initializer(ins[0])
            if table is not None and len(inits[table].dims) == 2 and source_initializer(ins[1]) is None:
                take(ins[0])
    return {name: numpy_helper.to_array(inits[name]) for name in sorted(found)}


def weight_reference(model: Any) -> tuple[np.ndarray, ...]:
    """The weights' values, for ``assign_trainable``."""
    return tuple(v for v in weight_initializers(model).values() if v.size > 0)
