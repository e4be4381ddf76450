"""One TFLite subgraph under construction and its serialization to a ``.tflite`` flatbuffer.

Why not the TFLite object API's plain ``ModelT.Pack`` with NumPy buffers: it grows the flatbuffer by doubling
(copying every weight ~log2(size) times), aligns weight buffers to one byte, and needs every converted weight in
memory at once. Here the builder is allocated once at the weights' total size and each weight only *reserves* its
16-byte aligned place (what the TF converter does, so XNNPACK reads it in place): the file is written as the
flatbuffer's own bytes with every weight streamed into its place from the array it already is (a Keras variable's
memory, a transposed view, a folded kernel). No second copy of the weights exists in memory: ViT-B/16 no longer
copies 330 MB into the builder first (0.2-0.5 s, and as much peak memory).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.array_io import write_c_order
from converter.contract import KEY as CONTRACT_KEY

# The largest flatbuffer the format can address; bigger models need the converter's external-buffer layout.
MAX_BYTES = 2**31 - 2**24

# What the layout contract's ``metadata`` buffer holds until ``contract.embed`` fills it: a JSON object that is no
# contract, 16 bytes so that nothing follows it in the file (no alignment padding).
CONTRACT_PLACEHOLDER = b"{}" + b" " * 14

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


# Weights at least this large are streamed into the file by ``finish`` instead of copied into the builder.
_DEFERRED_FROM = 1 << 16


def add_bytes(builder: Any, raw: memoryview | np.ndarray) -> int:
    """``raw`` as a 16-byte aligned ``[ubyte]`` vector in ``builder``; returns its offset. Vectors may be made before
    the tables that point at them, so each weight is placed as soon as it exists. In a :class:`WeightBuilder` a
    large array only reserves its place and is written by ``finish`` straight from its own memory, in C order
    whatever its strides (a transposed kernel: no contiguous copy of the whole); otherwise it is copied in."""
    size = raw.nbytes
    builder.StartVector(1, size, 16)
    builder.head -= size
    if isinstance(raw, np.ndarray) and size >= _DEFERRED_FROM and isinstance(builder, WeightBuilder):
        builder.deferred.append((len(builder.Bytes) - builder.head, raw))  # from the end: growth moves the head
    elif isinstance(raw, np.ndarray):
        dest = np.frombuffer(builder.Bytes, dtype=raw.dtype, count=raw.size, offset=builder.head)
        np.copyto(dest.reshape(raw.shape), raw)
    else:
        builder.Bytes[builder.head:builder.head + size] = raw
    return builder.EndVector()


def _flatbuffers() -> Any:
    import flatbuffers

    return flatbuffers


class WeightBuilder(_flatbuffers().Builder):  # type: ignore[misc]
    """A ``flatbuffers.Builder`` whose large weight vectors are placeholders, filled while ``finish`` writes."""

    __slots__ = ("deferred",)

    def __init__(self, size: int) -> None:
        """``size`` bytes backed by an anonymous memory map (``Builder(size)`` zero-fills a ``bytearray`` first; a
        fresh mapping's pages are zero already and only the pages the flatbuffer's own bytes land on are ever
        touched -- not the weights' placeholders). Small buffers keep the ``bytearray`` (a mapping costs a
        system call and rounds up to a page)."""
        super().__init__(size if size < _MAPPED_FROM else 0)
        self.deferred: list[tuple[int, np.ndarray]] = []
        if size >= _MAPPED_FROM:
            import mmap

            self.Bytes = mmap.mmap(-1, size)  # the Builder packs with struct.pack_into: any writable buffer
            self.head = size


_MAPPED_FROM = 8 << 20
# Rows of a non-contiguous weight made contiguous at a time while it is written (bounded extra memory).
_BLOCK_BYTES = 4 << 20


class AlignedBuffer:
    """A ``BufferT`` stand-in for the object API's ``Pack`` whose data vector is already in the builder."""

    def __init__(self, vector: int | None = None) -> None:
        self.vector = vector

    def Pack(self, builder: Any) -> int:  # noqa: N802 - the object API's method name
        s = schema()
        s.BufferStart(builder)
        if self.vector is not None:
            s.BufferAddData(builder, self.vector)
        return s.BufferEnd(builder)


def finish(builder: Any, model: Any, path: Path) -> None:
    """Pack the rest of ``model`` after its buffers and write the file: the flatbuffer's bytes, with each deferred
    weight written into its reserved place from its own array."""
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    data = memoryview(builder.Bytes)[builder.Head():]
    holes = sorted((len(data) - from_end, array) for from_end, array in getattr(builder, "deferred", ()))
    with Path(path).open("wb") as f:
        at = 0
        for start, array in holes:
            f.write(data[at:start])
            write_c_order(f, array, _BLOCK_BYTES)
            at = start + array.nbytes
        f.write(data[at:])


class Graph:
    """Tensors, constant buffers and operators of one subgraph, in execution order."""

    def __init__(self, capacity: int = 1 << 20) -> None:
        """``capacity``: the expected weight bytes (the flatbuffer is allocated once at that size)."""
        s = schema()
        self.builder = WeightBuilder(capacity + (1 << 20))
        # Made first, so it is the last bytes of the file: ``contract.embed`` then stores the layout contract by
        # rewriting only this vector in place, not re-packing every weight (ViT-B/16: 1.3 s and a 330 MB copy).
        self._contract = add_bytes(self.builder, memoryview(CONTRACT_PLACEHOLDER))
        self._s = s
        self.tensors: list[Any] = []
        self.buffers: list[AlignedBuffer] = [AlignedBuffer()]  # buffer 0: the schema's empty sentinel
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
            if self.weight_bytes + data.nbytes > MAX_BYTES:
                raise WriterRefused("over 2 GB of weights (the flatbuffer limit)")
            self.buffers.append(AlignedBuffer(add_bytes(self.builder, data) if data.nbytes else None))
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
        s = self._s
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
        model.buffers = [*self.buffers, AlignedBuffer(self._contract)]
        entry = s.MetadataT()
        entry.name = CONTRACT_KEY
        entry.buffer = len(model.buffers) - 1
        model.metadata = [entry]
        model.signatureDefs = [sig]
        finish(self.builder, model, path)

    def _tensor_map(self, name: str, index: int) -> Any:
        m = self._s.TensorMapT()
        m.name = name
        m.tensorIndex = index
        return m
