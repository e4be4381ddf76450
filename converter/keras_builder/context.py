"""State of one ONNX -> Keras build: tensors with their layout, constants, static shapes, layer names."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from converter.errors import UnsupportedError
from converter.layout import compose_axes, identity, invert


@dataclass
class KT:
    """A built tensor: a Keras symbolic tensor (or a numpy constant) plus its layout permutation.

    ``actual = logical.transpose(perm)``. ``flat_order``, when set, means this rank-2 tensor is a flatten whose
    features are in another order than the logical one: ``actual[:, i] = logical[:, flat_order[i]]`` — consumed by
    Dense (by permuting kernel rows) instead of materialising a transpose.
    """

    value: Any
    perm: tuple[int, ...]
    flat_order: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return isinstance(self.value, np.ndarray)

    @property
    def rank(self) -> int:
        return len(self.perm)


@dataclass(frozen=True)
class StaticShape:
    """Shape of a value measured at two batch sizes; ``None`` marks a dimension that scales with the batch."""

    dims: tuple[int | None, ...]
    at_b1: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.dims)


# Keras' torch backend registers weights under their layer's name and torch refuses "." in parameter names; JAX and
# TensorFlow accept anything. Letters, digits and "_" work under every backend: ``layer1.0.conv1`` -> ``layer1_0_conv1``
# (the dotted path is kept in ``BuildContext.layer_paths``, which goes into the artifact's contract).
_NAME_OK = re.compile(r"[^A-Za-z0-9_]")


def layer_name_for(path: str) -> str:
    """The Keras layer name a PyTorch module path becomes (also how localization matches names back)."""
    return _NAME_OK.sub("_", path)


@dataclass
class BuildContext:
    """Everything handlers need; handlers emit Keras and return KTs for the node's outputs."""

    nodes_by_output: dict[str, Any]
    consts: dict[str, np.ndarray]
    shapes: dict[str, StaticShape]
    consumers: dict[str, list[Any]]
    opset: int
    parameter_names: frozenset[str] = frozenset()
    unroll_max_steps: int = 0  # see BuildOptions
    merged_params: int = 0  # see BuiltModel.merged_params
    batch_source: Any = None  # a graph input with a dynamic batch: where batch-sized constants take their size
    batch_values: dict[str, Any] = field(default_factory=dict)  # name -> shapes.BatchValue, materialized lazily
    first_input: Any = None  # any graph input: where constants made tensors take their (zero) dependence
    env: dict[str, KT] = field(default_factory=dict)
    used_names: set[str] = field(default_factory=set)
    layer_paths: dict[str, str] = field(default_factory=dict)  # Keras layer name -> PyTorch module path
    skipped_nodes: set[str] = field(default_factory=set)

    # ---- access -------------------------------------------------------------------------------------------
    def get(self, name: str) -> KT:
        if name in self.env:
            return self.env[name]
        if name in self.batch_values:
            kt = self._batch_value(name)
            self.env[name] = kt
            return kt
        if name in self.consts:
            arr = self.consts[name]
            return KT(arr, identity(arr.ndim))
        raise UnsupportedError(f"value {name!r} is used before it is produced (graph not topologically sorted?)")

    def has(self, name: str) -> bool:
        return bool(name) and (name in self.env or name in self.consts or name in self.batch_values)

    def is_const(self, name: str) -> bool:
        """Known at conversion time (without materializing a batch-dependent value)."""
        return name in self.consts or (name in self.env and self.env[name].is_const)

    def _batch_value(self, name: str) -> KT:
        """A constant-derived value that follows the batch size, as a tensor: exact when it is one constant slice
        repeated along the batch axis (a mask or position ids broadcast to the batch)."""
        bv = self.batch_values[name]
        a, b = np.asarray(bv.at_2), np.asarray(bv.at_3)
        differ = [i for i in range(a.ndim) if a.ndim == b.ndim and a.shape[i] != b.shape[i]]
        if len(differ) == 1 and a.shape[differ[0]] == 2 and b.shape[differ[0]] == 3:
            axis = differ[0]
            rows = np.take(a, [0], axis=axis)
            if np.array_equal(np.broadcast_to(rows, a.shape), a) and np.array_equal(np.broadcast_to(rows, b.shape), b):
                return KT(self.batch_broadcast(rows, axis), identity(a.ndim))
        node = self.nodes_by_output.get(name)
        where = f"{node.op_type} node {node.name!r}" if node is not None else f"value {name!r}"
        raise UnsupportedError(
            f"{where}: the model computes with its own batch-dependent shape; export with a fixed batch "
            "(--static-batch) to convert it")

    def batch_broadcast(self, rows: np.ndarray, axis: int) -> Any:
        """``rows`` (size 1 on ``axis``) repeated to the run-time batch along ``axis``."""
        from keras import ops

        if self.batch_source is None:
            raise UnsupportedError("a batch-dependent constant in a model without a dynamic batch")
        batch = self.batch_source
        first = batch[(slice(None),) + (slice(0, 1),) * (len(batch.shape) - 1)]
        zeros = ops.reshape(ops.zeros_like(first), tuple(-1 if i == axis else 1 for i in range(rows.ndim)))
        if rows.dtype == np.bool_:
            return ops.logical_or(ops.cast(zeros, "bool"), rows)
        return ops.add(ops.cast(zeros, str(rows.dtype)), rows)

    def const_tensor(self, arr: np.ndarray) -> Any:
        """A constant as a symbolic tensor of exactly its shape (for a layer that must be called on one, e.g. an
        Embedding looked up at constant positions): ``arr`` plus a scalar zero taken from a graph input."""
        from keras import ops

        src = self.first_input
        first = src[(slice(0, 1),) * len(src.shape)] if len(src.shape) else src
        zero = ops.reshape(ops.zeros_like(first), ())
        arr = np.asarray(arr)
        if arr.dtype == np.bool_:
            return ops.logical_or(ops.cast(zero, "bool"), arr)
        return ops.add(ops.cast(zero, str(arr.dtype)), arr)

    def const(self, name: str, node: Any, what: str) -> np.ndarray:
        """A value that must be known at conversion time (weights, shapes, axes)."""
        if name in self.consts:
            return self.consts[name]
        kt = self.env.get(name)
        if kt is not None and kt.is_const:
            return kt.value
        raise UnsupportedError(
            f"{node.op_type} node {node.name!r}: {what} ({name!r}) is computed at run time; only constant "
            f"{what} can be converted"
        )

    def optional_const(self, node: Any, index: int, what: str) -> np.ndarray | None:
        if len(node.input) <= index or not node.input[index]:
            return None
        return self.const(node.input[index], node, what)

    def bias(self, node: Any, index: int) -> np.ndarray | None:
        """An optional bias input — None when it is a zero filler the exporter added for a layer without bias
        (known when the source's parameter names are: a real zero bias, e.g. a fresh ConvNeXt's, is kept)."""
        b = self.optional_const(node, index, "bias")
        if b is None or not self.parameter_names:
            return b
        if node.input[index] not in self.parameter_names and not np.any(b):
            return None
        return b

    def shape(self, name: str) -> StaticShape:
        s = self.shapes.get(name)
        if s is None:
            raise UnsupportedError(f"no shape known for value {name!r}")
        return s

    # ---- attributes -----------------------------------------------------------------------------------------
    @staticmethod
    def attr(node: Any, name: str, default: Any = None) -> Any:
        import onnx

        for a in node.attribute:
            if a.name == name:
                v = onnx.helper.get_attribute_value(a)
                return v.decode() if isinstance(v, bytes) else v
        return default

    # ---- naming --------------------------------------------------------------------------------------------
    def layer_name(self, node: Any, weight: str | None = None, suffix: str = "") -> str:
        """A unique Keras layer name every backend accepts: the PyTorch module path where the export recorded one,
        with ``_`` for ``.`` (the path itself is remembered in ``layer_paths``)."""
        base, module = "", ""
        if weight:
            base = module = weight.rsplit(".", 1)[0] if "." in weight else weight
        if not base:
            path, op = scope_of(node)
            module = path
            base = f"{path}.{op}" if path and op else (path or op)
        if not base:
            base = node.name or node.op_type.lower()
        base = layer_name_for(base.removeprefix("node_")) + suffix
        name, k = base, 1
        while name in self.used_names:
            name = f"{base}_{k}"
            k += 1
        self.used_names.add(name)
        if module:
            self.layer_paths[name] = module
        return name

    # ---- layout --------------------------------------------------------------------------------------------
    def to_perm(self, kt: KT, target: Sequence[int]) -> KT:
        """Bring ``kt`` into ``target`` order, emitting a transpose only when the memory order really changes."""
        from keras import ops

        kt = self.materialize(kt)
        target = tuple(target)
        if kt.perm == target:
            return kt
        axes = compose_axes(kt.perm, target)
        if kt.is_const:
            return KT(np.ascontiguousarray(np.transpose(kt.value, axes)), target)
        return KT(ops.transpose(kt.value, axes), target)

    def to_identity(self, kt: KT) -> KT:
        return self.to_perm(kt, identity(kt.rank))

    def materialize(self, kt: KT) -> KT:
        """Turn a reordered flatten back into logical feature order (a gather) for consumers that need it."""
        if kt.flat_order is None:
            return kt
        from keras import ops

        inverse = np.argsort(kt.flat_order).astype("int32")
        return KT(ops.take(kt.value, inverse, axis=1), kt.perm)

    def same_memory_order(self, name: str, perm: Sequence[int]) -> bool:
        """True when transposing by ``perm`` moves only size-1 axes, so flatten/reshape need no transpose."""
        dims = self.shape(name).at_b1
        kept = [p for p in perm if dims[p] != 1]
        return kept == sorted(kept)

    def const_for(self, arr: np.ndarray, like: KT) -> np.ndarray:
        """A constant operand broadcast against ``like``: pad to its rank, then apply its permutation."""
        arr = np.asarray(arr)
        if like.rank == 0 or arr.ndim > like.rank:
            return arr
        arr = arr.reshape((1,) * (like.rank - arr.ndim) + arr.shape)
        return np.ascontiguousarray(np.transpose(arr, like.perm))

    def axis(self, kt: KT, logical_axis: int) -> int:
        logical_axis = logical_axis % kt.rank if kt.rank else 0
        return kt.perm.index(logical_axis)


def scope_of(node: Any) -> tuple[str, str]:
    """(module path as ``named_modules()`` prints it, the op's own name) from the exporter's name scopes.

    The dynamo exporter records one entry per nesting level, each already fully qualified (``['stages',
    'stages.0', 'stages.0.blocks', ...]``); joining them would repeat the path per level, so the deepest module
    entry is the path. Older exporters' local names (``['stages', '0', 'blocks']``) are joined instead."""
    for prop in getattr(node, "metadata_props", ()):
        if prop.key == "pkg.torch.onnx.name_scopes":
            parts = [p for p in re.findall(r"'([^']*)'", prop.value) if p]
            if not parts:
                return "", ""
            modules, op = parts[:-1], parts[-1]
            if len(parts) == 1:
                modules, op = parts, ""
            qualified = all(b.startswith(a + ".") for a, b in zip(modules, modules[1:]))
            path = modules[-1] if qualified and modules else ".".join(modules)
            return path, op
    return "", ""


def drop_axes(perm: Sequence[int], removed_logical: Sequence[int]) -> tuple[int, ...]:
    """The permutation left after removing logical axes (e.g. a reduction without keepdims)."""
    removed = set(removed_logical)
    kept = [p for p in perm if p not in removed]
    order = sorted(kept)
    return tuple(order.index(p) for p in kept)




__all__ = ["KT", "StaticShape", "BuildContext", "drop_axes", "invert", "scope_of"]


def call_with_weights(layer: Any, weights: Sequence[np.ndarray], *args: Any, **kwargs: Any) -> Any:
    """``layer(*args, **kwargs)`` whose variables are created holding ``weights`` (in ``set_weights`` order).

    Why not call, then ``set_weights``: building fills every variable from its initializer first -- for Dense and
    Conv kernels Glorot-uniform random numbers, drawn by TensorFlow ops: 1.3-2 s of ViT-B/16's ``build-keras``
    for values that are overwritten at once. Here each ``add_weight`` of the layer takes the next given array as
    its initial value (the layer's configured initializers, and so its config, are untouched). When the variables
    made are not exactly ``layer.weights`` with the given shapes, in order (a layer whose variables live in a
    sub-layer), the values are assigned with ``set_weights`` as before.
    """
    given = [np.asarray(w) for w in weights]
    made: list[Any] = []
    add_weight = layer.add_weight

    def add(*a: Any, **kw: Any) -> Any:
        k = len(made)
        if not a and "initializer" in kw and k < len(given):
            value = given[k]
            kw["initializer"] = lambda shape, dtype=None: _given(value, shape, dtype)
        variable = add_weight(*a, **kw)
        made.append(variable)
        return variable

    object.__setattr__(layer, "add_weight", add)
    try:
        out = layer(*args, **kwargs)
    finally:
        object.__delattr__(layer, "add_weight")
    current = layer.weights
    if len(made) != len(current) or any(m is not c for m, c in zip(made, current)) or len(made) != len(given) \
            or any(tuple(m.shape) != g.shape for m, g in zip(made, given)):
        layer.set_weights(given)
    return out


def _given(value: np.ndarray, shape: Any, dtype: Any) -> np.ndarray:
    """An initializer's answer: ``value`` itself where the shape is the one asked for (else ``call_with_weights``
    sees the mismatch and assigns with ``set_weights``, which raises as it always did)."""
    if tuple(shape) != value.shape:
        return np.zeros(tuple(shape), dtype=dtype or value.dtype)
    return value.astype(dtype, copy=False) if dtype is not None else value
