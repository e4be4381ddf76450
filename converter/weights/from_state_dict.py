"""Load a torch ``state_dict`` into a built Keras model without the torch class, walking the *Keras* side.

Used by ``crossport transfer`` when the original PyTorch class is not available. Attribute ``conv1`` in Keras
takes keys ``conv1.*``; ``keras.Sequential`` and list children take ``<index>.*``; a ``keras.Sequential`` that
stands in for one torch layer (``ZeroPadding2D`` + ``Conv2D``) takes the keys of that layer. The layer type on the
Keras side decides the transform (the inverse view of ``converter.weights.layers``). Every key and every variable
must be used, else the error names it. Nothing can be *verified* this way: there is no reference model.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from converter.errors import ShapeError
from converter.weights.errors import WeightMappingError
from rules.keras_names import KERAS_RESERVED


class _State:
    def __init__(self, state: Mapping[str, np.ndarray], layout: str, flatten: Mapping[str, tuple[int, ...]]) -> None:
        self.state = dict(state)
        self.layout = layout
        self.flatten = dict(flatten)
        self.used: set[str] = set()
        self.assigned: set[int] = set()

    def take(self, key: str) -> np.ndarray:
        if key not in self.state:
            raise WeightMappingError(f"{key}: expected in the checkpoint for the Keras layer at this path, not found")
        self.used.add(key)
        return self.state[key]

    def has(self, key: str) -> bool:
        return key in self.state

    def put(self, variable: Any, value: np.ndarray, key: str) -> None:
        if tuple(variable.shape) != tuple(value.shape):
            raise ShapeError(f"{key}: checkpoint gives {tuple(value.shape)} after the layout transform, Keras variable "
                             f"{variable.path} has {tuple(variable.shape)}")
        variable.assign(value.astype(np.dtype(variable.dtype)))
        self.assigned.add(id(variable))


def _leaf(k: Any, p: str, s: _State) -> bool:
    """Transfer one Keras layer of a known type; False if the type is not a weighted leaf we know."""
    from keras import layers as L

    if isinstance(k, L.Dense):
        w = s.take(p + "weight")
        shape = s.flatten.get(p.rstrip("."))
        if s.layout == "channels_last" and shape is not None and len(shape) >= 2:
            c = shape[-1]
            spatial = shape[:-1]  # recorded in Keras order (*spatial, C); torch rows are (C, *spatial)
            w = w.reshape((w.shape[0], c, *spatial)).transpose((0, *range(2, len(shape) + 1), 1)).reshape(w.shape[0], -1)
        s.put(k.kernel, w.T, p + "weight")
        if k.bias is not None:
            s.put(k.bias, s.take(p + "bias"), p + "bias")
        return True
    if isinstance(k, (L.Conv1D, L.Conv2D, L.Conv3D, L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        w = s.take(p + "weight")
        s.put(k.kernel, w.transpose((*range(2, w.ndim), 1, 0)), p + "weight")
        if k.bias is not None:
            s.put(k.bias, s.take(p + "bias"), p + "bias")
        return True
    if isinstance(k, L.BatchNormalization):
        if k.gamma is not None:
            s.put(k.gamma, s.take(p + "weight"), p + "weight")
        if k.beta is not None:
            s.put(k.beta, s.take(p + "bias"), p + "bias")
        s.put(k.moving_mean, s.take(p + "running_mean"), p + "running_mean")
        s.put(k.moving_variance, s.take(p + "running_var"), p + "running_var")
        if s.has(p + "num_batches_tracked"):
            s.take(p + "num_batches_tracked")
        return True
    if isinstance(k, (L.LayerNormalization, L.GroupNormalization)):
        if k.gamma is not None:
            s.put(k.gamma, s.take(p + "weight"), p + "weight")
        if k.beta is not None:
            s.put(k.beta, s.take(p + "bias"), p + "bias")
        return True
    if isinstance(k, L.Embedding):
        s.put(k.embeddings, s.take(p + "weight"), p + "weight")
        return True
    if isinstance(k, (L.LSTM, L.GRU)):
        from converter.weights.layers import _gru_reorder

        gru = isinstance(k, L.GRU)
        fix = _gru_reorder if gru else (lambda a: a)
        s.put(k.cell.kernel, fix(s.take(p + "weight_ih_l0")).T, p + "weight_ih_l0")
        s.put(k.cell.recurrent_kernel, fix(s.take(p + "weight_hh_l0")).T, p + "weight_hh_l0")
        b_ih, b_hh = fix(s.take(p + "bias_ih_l0")), fix(s.take(p + "bias_hh_l0"))
        s.put(k.cell.bias, np.stack([b_ih, b_hh]) if gru else b_ih + b_hh, p + "bias_ih_l0")
        return True
    if isinstance(k, L.MultiHeadAttention):
        w = s.take(p + "in_proj_weight")
        e = w.shape[1]
        h = k.num_heads
        d = e // h
        biases = np.split(s.take(p + "in_proj_bias"), 3) if s.has(p + "in_proj_bias") else (None, None, None)
        for dense, wi, bi in zip((k._query_dense, k._key_dense, k._value_dense), np.split(w, 3), biases):
            s.put(dense.kernel, wi.T.reshape(e, h, d), p + "in_proj_weight")
            if bi is not None:
                s.put(dense.bias, bi.reshape(h, d), p + "in_proj_bias")
        s.put(k._output_dense.kernel, s.take(p + "out_proj.weight").T.reshape(h, d, e), p + "out_proj.weight")
        if s.has(p + "out_proj.bias"):
            s.put(k._output_dense.bias, s.take(p + "out_proj.bias"), p + "out_proj.bias")
        return True
    if not k.weights:
        return True  # activations, pooling, dropout, padding, flatten, identity ...
    return False


def _torch_name(name: str) -> str:
    return name[:-1] if name.endswith("_") and name[:-1] in KERAS_RESERVED else name


def _walk(k: Any, p: str, s: _State) -> None:
    import keras

    if isinstance(k, keras.Sequential):
        weighted = [layer for layer in k.layers if layer.weights]
        if s.has(p + "weight") and len(weighted) == 1:  # one torch layer written as padding/cropping + layer
            _leaf(weighted[0], p, s)
            return
        for i, layer in enumerate(k.layers):
            _walk(layer, f"{p}{i}.", s)
        return
    if isinstance(k, (list, tuple)) or type(k).__name__ == "TrackedList":
        for i, item in enumerate(k):
            _walk(item, f"{p}{i}.", s)
        return
    if isinstance(k, dict) or type(k).__name__ == "TrackedDict":
        for key, item in k.items():
            _walk(item, f"{p}{key}.", s)
        return
    if isinstance(k, keras.Variable):
        s.put(k, s.take(p.rstrip(".")), p.rstrip("."))
        return
    if not isinstance(k, keras.layers.Layer):
        return
    if type(k).__module__.startswith("keras.") and _leaf(k, p, s):
        return
    for name, value in vars(k).items():
        if name.startswith("_"):
            continue
        if isinstance(value, (keras.layers.Layer, keras.Variable, list, tuple, dict)) or type(value).__name__ in (
            "TrackedList", "TrackedDict"
        ):
            _walk(value, f"{p}{_torch_name(name)}.", s)


def load_state_dict_into_keras(state: Mapping[str, Any], keras_model: Any, layout: str,
                               flatten: Mapping[str, tuple[int, ...]] | None = None) -> int:
    """Assign every variable of the built ``keras_model`` from ``state``; returns the number of keys used."""
    arrays = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in state.items()}
    s = _State(arrays, layout, flatten or {})
    _walk(keras_model, "", s)
    unused = sorted(set(arrays) - s.used)
    if unused:
        raise WeightMappingError(f"checkpoint key(s) with no Keras counterpart: {', '.join(unused[:5])}"
                                 + (" ..." if len(unused) > 5 else ""))
    unset = [v.path for v in keras_model.weights if id(v) not in s.assigned]
    if unset:
        raise WeightMappingError(f"Keras variable(s) not set from the checkpoint: {', '.join(unset[:5])}"
                                 + (" ..." if len(unset) > 5 else ""))
    return len(s.used)


def keras_flatten_inputs(keras_model: Any, inputs: list[Any]) -> dict[str, tuple[int, ...]]:
    """Which Dense layers (by attribute path) receive a flattened rank>=3 tensor, and its (*spatial, C) shape.

    Runs the Keras model once with ``keras.ops.reshape`` and ``Flatten``/``Dense`` calls observed.
    """
    import keras

    marks: dict[int, tuple[int, ...]] = {}
    keep: list[Any] = []
    seen: dict[int, tuple[int, ...]] = {}
    original_reshape = keras.ops.reshape
    original_flatten = keras.layers.Flatten.call
    original_dense = keras.layers.Dense.call

    def reshape(x, newshape):  # type: ignore[no-untyped-def]
        out = original_reshape(x, newshape)
        if len(x.shape) >= 3 and len(out.shape) == 2:
            marks[id(out)] = tuple(int(d) for d in x.shape[1:])
            keep.append(out)
        return out

    def flatten(self, x):  # type: ignore[no-untyped-def]
        out = original_flatten(self, x)
        if len(x.shape) >= 3:
            marks[id(out)] = tuple(int(d) for d in x.shape[1:])
            keep.append(out)
        return out

    def dense(self, x, *args, **kwargs):  # type: ignore[no-untyped-def]
        if id(x) in marks:
            seen[id(self)] = marks[id(x)]
        return original_dense(self, x, *args, **kwargs)

    keras.ops.reshape, keras.layers.Flatten.call, keras.layers.Dense.call = reshape, flatten, dense
    try:
        keras_model(*inputs, training=False)
    finally:
        keras.ops.reshape, keras.layers.Flatten.call, keras.layers.Dense.call = (
            original_reshape, original_flatten, original_dense)
    paths: dict[str, tuple[int, ...]] = {}
    _collect_paths(keras_model, "", seen, paths)
    return paths


def _collect_paths(k: Any, p: str, seen: dict[int, tuple[int, ...]], out: dict[str, tuple[int, ...]]) -> None:
    import keras

    if isinstance(k, keras.layers.Dense) and id(k) in seen:
        out[p.rstrip(".")] = seen[id(k)]
        return
    if isinstance(k, keras.Sequential):
        for i, layer in enumerate(k.layers):
            _collect_paths(layer, f"{p}{i}.", seen, out)
        return
    if isinstance(k, (list, tuple)) or type(k).__name__ == "TrackedList":
        for i, item in enumerate(k):
            _collect_paths(item, f"{p}{i}.", seen, out)
        return
    if isinstance(k, keras.layers.Layer) and not type(k).__module__.startswith("keras."):
        for name, value in vars(k).items():
            if not name.startswith("_"):
                _collect_paths(value, f"{p}{_torch_name(name)}.", seen, out)
