"""One TFLite subgraph under construction and its serialization to a ``.tflite`` flatbuffer.

Why not the TFLite object API's plain ``ModelT.Pack`` with NumPy buffers: it grows the flatbuffer by doubling
(copying every weight ~log2(size) times), aligns weight buffers to one byte, and needs every converted weight in
memory at once. Here weights wait in a spill file, the builder starts at their total size and each is read into it
once, 16-byte aligned (what the TF converter does, so XNNPACK reads it in place).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# The largest flatbuffer the format can address; bigger models need the converter's external-buffer layout.
MAX_BYTES = 2**31 - 2**24

_DTYPES = {"float32": "FLOAT32", "float16": "FLOAT16", "int32": "INT32", "int64": "INT64", "bool": "BOOL",
           "int8": "INT8", "uint8": "UINT8", "int16": "INT16", "float64": "FLOAT64"}


class WriterRefused(Exception):
    """The direct writer cannot express this model (an op or a configuration it does not map); the caller falls
    back to the TF converter. The message names the op."""


def schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def tensor_type(dtype: Any) -> int:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise WriterRefused(f"tensor dtype {name}")
    return getattr(schema().TensorType, _DTYPES[name])


class _SpilledBuffer:
    """A ``BufferT`` stand-in: the weight waits in a spill file (not in memory) and is read straight into the
    flatbuffer, 16-byte aligned, when the model is packed."""

    def __init__(self, spill: Any = None, offset: int = 0, nbytes: int = 0) -> None:
        self.spill, self.offset, self.nbytes = spill, offset, nbytes

    def Pack(self, builder: Any) -> int:  # noqa: N802 - the object API's method name
        s = schema()
        vec = None
        if self.nbytes:
            builder.StartVector(1, self.nbytes, 16)
            builder.head -= self.nbytes
            self.spill.seek(self.offset)
            if self.spill.readinto(memoryview(builder.Bytes)[builder.head:builder.head + self.nbytes]) != self.nbytes:
                raise OSError("short read from the weight spill file")
            vec = builder.EndVector()
        s.BufferStart(builder)
        if vec is not None:
            s.BufferAddData(builder, vec)
        return s.BufferEnd(builder)


class Graph:
    """Tensors, constant buffers and operators of one subgraph, in execution order."""

    def __init__(self) -> None:
        s = schema()
        self._s = s
        self.tensors: list[Any] = []
        self.buffers: list[_SpilledBuffer] = [_SpilledBuffer()]  # buffer 0: the schema's empty sentinel
        # Weights go to disk as they are made, so the converted copies are never all in memory beside the Keras
        # model's own: the packed flatbuffer is the one extra copy (ViT-B/16: 346 MB instead of 692 MB).
        self._spill = tempfile.TemporaryFile(prefix="crossport-tflite-")
        self.operators: list[Any] = []
        self._codes: dict[int, int] = {}
        self.opcodes: list[Any] = []
        self.weight_bytes = 0
        self._consts: dict[tuple[Any, ...], int] = {}

    # ---- tensors ----------------------------------------------------------------------------------------------

    def tensor(self, name: str, shape: Sequence[int | None], dtype: Any, data: np.ndarray | None = None) -> int:
        """A tensor; ``None`` dimensions are dynamic (shape 1, shape_signature -1)."""
        t = self._s.TensorT()
        t.name = name
        t.type = tensor_type(dtype)
        dims = [1 if d is None else int(d) for d in shape]
        t.shape = np.asarray(dims, dtype=np.int32)
        if any(d is None for d in shape):
            t.shapeSignature = np.asarray([-1 if d is None else int(d) for d in shape], dtype=np.int32)
        t.buffer = 0
        if data is not None:
            offset = self._spill.seek(0, 2)
            self._spill.write(memoryview(np.ascontiguousarray(data)).cast("B"))
            self.buffers.append(_SpilledBuffer(self._spill, offset, data.nbytes))
            self.weight_bytes += data.nbytes
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, value: Any, dtype: Any = None, name: str = "") -> int:
        """A constant tensor; small constants with the same value are shared."""
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        key = None
        if array.size <= 64:
            key = (array.dtype.str, array.shape, array.tobytes())
            if key in self._consts:
                return self._consts[key]
        index = self.tensor(name or f"const_{len(self.tensors)}", array.shape, array.dtype,
                            np.ascontiguousarray(array))
        if key is not None:
            self._consts[key] = index
        return index

    def shape_of(self, index: int) -> list[int | None]:
        t = self.tensors[index]
        sig = t.shapeSignature if t.shapeSignature is not None else t.shape
        return [None if int(d) < 0 else int(d) for d in sig]

    # ---- operators --------------------------------------------------------------------------------------------

    def op(self, name: str, inputs: Sequence[int], outputs: Sequence[int], options: Any = None) -> None:
        """Append one builtin operator (``name`` as in ``BuiltinOperator``); ``-1`` marks an omitted input."""
        code = getattr(self._s.BuiltinOperator, name)
        if code not in self._codes:
            oc = self._s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            self._codes[code] = len(self.opcodes)
            self.opcodes.append(oc)
        o = self._s.OperatorT()
        o.opcodeIndex = self._codes[code]
        o.inputs = np.asarray(list(inputs), dtype=np.int32)
        o.outputs = np.asarray(list(outputs), dtype=np.int32)
        if options is not None:
            o.builtinOptionsType = getattr(self._s.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)

    def options(self, kind: str, **fields: Any) -> Any:
        """``kind`` options object (e.g. ``Conv2DOptions``) with the given fields set."""
        opt = getattr(self._s, f"{kind}T")()
        for k, v in fields.items():
            if not hasattr(opt, k):
                raise AttributeError(f"{kind} has no field {k}")
            setattr(opt, k, v)
        return opt

    # ---- serialization ----------------------------------------------------------------------------------------

    def write(self, path: Path, inputs: Sequence[tuple[str, int]], outputs: Sequence[tuple[str, int]],
              description: str = "crossport direct writer") -> None:
        """The model with one ``serving_default`` signature (input/output keys as given), written to ``path``."""
        import flatbuffers

        s = self._s
        if self.weight_bytes > MAX_BYTES:
            raise WriterRefused(f"{self.weight_bytes / 1e9:.1f} GB of weights (over the 2 GB flatbuffer limit)")
        sub = s.SubGraphT()
        sub.name = "main"
        sub.tensors = self.tensors
        sub.operators = self.operators
        sub.inputs = np.asarray([i for _, i in inputs], dtype=np.int32)
        sub.outputs = np.asarray([i for _, i in outputs], dtype=np.int32)
        sig = s.SignatureDefT()
        sig.signatureKey = "serving_default"
        sig.subgraphIndex = 0
        sig.inputs = [self._tensor_map(n, i) for n, i in inputs]
        sig.outputs = [self._tensor_map(n, i) for n, i in outputs]
        model = s.ModelT()
        model.version = 3
        model.description = description
        model.operatorCodes = self.opcodes
        model.subgraphs = [sub]
        model.buffers = self.buffers
        model.signatureDefs = [sig]
        try:
            builder = flatbuffers.Builder(self.weight_bytes + 16 * len(self.buffers) + (1 << 20))
            builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        finally:
            self._spill.close()
        with Path(path).open("wb") as f:
            f.write(memoryview(builder.Bytes)[builder.Head():])

    def _tensor_map(self, name: str, index: int) -> Any:
        m = self._s.TensorMapT()
        m.name = name
        m.tensorIndex = index
        return m
