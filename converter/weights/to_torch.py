"""Keras -> PyTorch: walk a built Keras model and its rewritten torch module side by side and move every weight.

The pairing follows the ``--to torch`` rewrite's conventions: a ``keras.Sequential`` maps to ``nn.Sequential`` by
position among *weighted* entries (fused activations add weightless torch entries); a functional-API model maps
layer ``name`` to attribute ``name``; a subclassed model maps attribute to attribute. A torch ``nn.Sequential``
standing in for one Keras layer (layer + activation, padding + conv) gives its one weighted child. Layouts are the
inverse of ``converter.weights.layers``. Anything left over on either side is an error that names it.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from converter.errors import ShapeError
from converter.weights.errors import WeightMappingError, check_all_used
from converter.weights.layers import _gru_reorder


class _Sink:
    def __init__(self, flatten_inputs: Mapping[str, tuple[int, ...]]) -> None:
        self.flatten_inputs = dict(flatten_inputs)
        self.assigned: set[str] = set()
        self.used: set[int] = set()
        self.permuted: list[str] = []

    def put(self, param: Any, key: str, value: np.ndarray, variable: Any) -> None:
        import torch

        if param is None:
            raise WeightMappingError(f"{key}: the torch module has no parameter for Keras {variable.path} (bias/affine?)")
        if tuple(param.shape) != tuple(value.shape):
            raise ShapeError(f"{key}: Keras {variable.path} gives shape {tuple(value.shape)} after the layout transform "
                             f"but the torch tensor has {tuple(param.shape)}")
        with torch.no_grad():
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(param.dtype))
        self.assigned.add(key)
        self.used.add(id(variable))


def _np(v: Any) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(v))


def _put(sink: _Sink, t: Any, path: str, name: str, value: np.ndarray, variable: Any) -> None:
    sink.put(getattr(t, name, None), path + name, value, variable)


def dense(k: Any, t: Any, path: str, sink: _Sink) -> None:
    w = _np(k.kernel).T
    sample = sink.flatten_inputs.get(path.rstrip("."))
    if sample is not None and len(sample) >= 2 and any(d > 1 for d in sample[1:]):
        # Keras flattened (*spatial, C); the NCHW torch model flattens (C, *spatial): permute the columns.
        rank = len(sample)
        spatial_first = (*sample[1:], sample[0])
        w = w.reshape((w.shape[0], *spatial_first)).transpose((0, rank, *range(1, rank))).reshape(w.shape[0], -1)
        sink.permuted.append(path.rstrip("."))
    _put(sink, t, path, "weight", w, k.kernel)
    if k.bias is not None:
        _put(sink, t, path, "bias", _np(k.bias), k.bias)


def conv(k: Any, t: Any, path: str, sink: _Sink) -> None:
    w = _np(k.kernel)
    n = w.ndim
    _put(sink, t, path, "weight", w.transpose((n - 1, n - 2, *range(n - 2))), k.kernel)
    if k.bias is not None:
        _put(sink, t, path, "bias", _np(k.bias), k.bias)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, C, m) -> torch grouped (C*m, 1, kh, kw); output channel c*m + j in both."""
    kh, kw, c, m = w.shape
    return w.reshape(kh, kw, c * m).transpose(2, 0, 1)[:, None]


def depthwise(k: Any, t: Any, path: str, sink: _Sink) -> None:
    _put(sink, t, path, "weight", _depthwise_kernel(_np(k.kernel)), k.kernel)
    if k.bias is not None:
        _put(sink, t, path, "bias", _np(k.bias), k.bias)


def separable(k: Any, t: Any, path: str, sink: _Sink) -> None:
    units = _weighted(t)
    while len(units) == 1:  # nn.Sequential(nn.Sequential(depthwise, pointwise), activation)
        path, t = f"{path}{units[0][0]}.", units[0][1]
        units = _weighted(t)
    if len(units) != 2:
        raise WeightMappingError(f"{path.rstrip('.')}: SeparableConv2D needs (depthwise, pointwise) convs in torch")
    (dw_name, dw), (pw_name, pw) = units
    _put(sink, dw, f"{path}{dw_name}.", "weight", _depthwise_kernel(_np(k.depthwise_kernel)), k.depthwise_kernel)
    _put(sink, pw, f"{path}{pw_name}.", "weight", _np(k.pointwise_kernel).transpose(3, 2, 0, 1), k.pointwise_kernel)
    if k.bias is not None:
        _put(sink, pw, f"{path}{pw_name}.", "bias", _np(k.bias), k.bias)


def norm(k: Any, t: Any, path: str, sink: _Sink) -> None:
    if getattr(k, "gamma", None) is not None:
        _put(sink, t, path, "weight", _np(k.gamma), k.gamma)
    if getattr(k, "beta", None) is not None:
        _put(sink, t, path, "bias", _np(k.beta), k.beta)
    if hasattr(k, "moving_mean"):
        _put(sink, t, path, "running_mean", _np(k.moving_mean), k.moving_mean)
        _put(sink, t, path, "running_var", _np(k.moving_variance), k.moving_variance)
        sink.assigned.add(path + "num_batches_tracked")


def embedding(k: Any, t: Any, path: str, sink: _Sink) -> None:
    _put(sink, t, path, "weight", _np(k.embeddings), k.embeddings)


def recurrent(k: Any, t: Any, path: str, sink: _Sink, suffix: str = "_l0") -> None:
    import keras

    cell = k.cell
    gru = isinstance(k, keras.layers.GRU)
    if gru and not cell.reset_after:
        raise WeightMappingError(f"{path.rstrip('.') or '<root>'}: GRU(reset_after=False) applies the reset gate before "
                                 "the recurrent matmul; torch's GRU computes a different function")
    fix: Callable[[np.ndarray], np.ndarray] = (lambda a: _gru_reorder(a.T).T) if gru else (lambda a: a)
    _put(sink, t, path, f"weight_ih{suffix}", fix(_np(cell.kernel)).T, cell.kernel)
    _put(sink, t, path, f"weight_hh{suffix}", fix(_np(cell.recurrent_kernel)).T, cell.recurrent_kernel)
    if cell.bias is None:
        return
    bias = _np(cell.bias)
    if gru:  # reset_after=True keeps input and recurrent biases apart, (2, 3H), as torch does
        _put(sink, t, path, f"bias_ih{suffix}", _gru_reorder(bias[0]), cell.bias)
        _put(sink, t, path, f"bias_hh{suffix}", _gru_reorder(bias[1]), cell.bias)
        return
    # One Keras bias = torch's b_ih + b_hh; the split is not unique: all of it in b_ih.
    _put(sink, t, path, f"bias_ih{suffix}", bias, cell.bias)
    _put(sink, t, path, f"bias_hh{suffix}", np.zeros_like(bias), cell.bias)


def bidirectional(k: Any, t: Any, path: str, sink: _Sink) -> None:
    recurrent(k.forward_layer, t, path, sink, "_l0")
    recurrent(k.backward_layer, t, path, sink, "_l0_reverse")


def attention(k: Any, t: Any, path: str, sink: _Sink) -> None:
    projections = (k._query_dense, k._key_dense, k._value_dense)
    weights = [_np(d.kernel).reshape(_np(d.kernel).shape[0], -1).T for d in projections]
    _put(sink, t, path, "in_proj_weight", np.concatenate(weights), projections[0].kernel)
    for d in projections:
        sink.used.add(id(d.kernel))
    if projections[0].bias is not None:
        _put(sink, t, path, "in_proj_bias", np.concatenate([_np(d.bias).reshape(-1) for d in projections]),
             projections[0].bias)
        for d in projections:
            sink.used.add(id(d.bias))
    out = k._output_dense
    kernel = _np(out.kernel)
    _put(sink, t.out_proj, path + "out_proj.", "weight", kernel.reshape(-1, kernel.shape[-1]).T, out.kernel)
    if out.bias is not None:
        _put(sink, t.out_proj, path + "out_proj.", "bias", _np(out.bias), out.bias)


def _leaves() -> list[tuple[type, Callable[[Any, Any, str, _Sink], None]]]:
    from keras import layers as L

    return [
        (L.SeparableConv2D, separable), (L.DepthwiseConv2D, depthwise), (L.Dense, dense),
        (L.Conv1D, conv), (L.Conv2D, conv), (L.Conv3D, conv), (L.Conv1DTranspose, conv), (L.Conv2DTranspose, conv),
        (L.BatchNormalization, norm), (L.LayerNormalization, norm), (L.GroupNormalization, norm),
        (L.Embedding, embedding), (L.Bidirectional, bidirectional),
        (L.LSTM, recurrent), (L.GRU, recurrent), (L.SimpleRNN, recurrent), (L.MultiHeadAttention, attention),
    ]


def _has_state(module: Any) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _weighted(t: Any) -> list[tuple[str, Any]]:
    return [(name, child) for name, child in t.named_children() if _has_state(child)]


def is_functional(model: Any) -> bool:
    """A Keras functional-API model (a graph of layer calls), not a Sequential or a subclassed model."""
    import keras
    from keras.src.models.functional import Functional

    return isinstance(model, Functional) and not isinstance(model, keras.Sequential)


def _walk(k: Any, t: Any, path: str, sink: _Sink) -> None:
    import keras
    import torch.nn as nn

    where = path.rstrip(".") or "<root>"
    for cls, fn in _leaves():
        if isinstance(k, cls):
            # nn.Sequential(pad, layer), nn.Sequential(layer, crop), nn.Sequential(that, activation): one weighted
            # module, however deep the rewrite nested it.
            while isinstance(t, nn.Sequential) and fn is not separable:
                units = _weighted(t)
                if len(units) != 1:
                    raise WeightMappingError(f"{where}: Keras {type(k).__name__} needs one weighted torch module, "
                                             f"found {len(units)}")
                path, t = f"{path}{units[0][0]}.", units[0][1]
            fn(k, t, path, sink)
            return
    if isinstance(k, keras.Sequential):
        k_units = [layer for layer in k.layers if layer.weights]
        t_units = _weighted(t) if isinstance(t, nn.Sequential) else []
        if len(k_units) != len(t_units):
            raise WeightMappingError(f"{where}: Keras Sequential has {len(k_units)} weighted layers, torch "
                                     f"{type(t).__name__} {len(t_units)}")
        for layer, (name, child) in zip(k_units, t_units):
            _walk(layer, child, f"{path}{name}.", sink)
        return
    if is_functional(k):
        for layer in k.layers:
            if not layer.weights:
                continue
            child = getattr(t, layer.name, None)
            if child is None:
                raise WeightMappingError(f"{path}{layer.name}: Keras layer has no torch attribute of that name")
            _walk(layer, child, f"{path}{layer.name}.", sink)
        return
    if not k.weights:
        return  # activations, pooling, dropout, padding, flatten ...
    if type(k).__module__.startswith("keras"):
        raise WeightMappingError(f"{where}: no weight transfer for Keras {type(k).__name__}")
    for attr, value in vars(k).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, keras.Variable):
            _put(sink, t, path, attr, _np(value), value)
        elif isinstance(value, keras.layers.Layer) and value.weights:
            child = getattr(t, attr, None)
            if child is None:
                raise WeightMappingError(f"{path}{attr}: Keras layer has no torch attribute of the same name")
            _walk(value, child, f"{path}{attr}.", sink)
        elif isinstance(value, (list, tuple)) and any(isinstance(v, keras.layers.Layer) for v in value):
            children = getattr(t, attr, None)
            if children is None or len(children) != len(value):
                raise WeightMappingError(f"{path}{attr}: Keras list of {len(value)} layers, torch has "
                                         f"{type(children).__name__}")
            for i, (item, child) in enumerate(zip(value, children)):
                _walk(item, child, f"{path}{attr}.{i}.", sink)


def keras_to_torch(keras_model: Any, torch_module: Any, flatten_inputs: Mapping[str, tuple[int, ...]] | None = None
                   ) -> tuple[int, int, tuple[str, ...]]:
    """Copy every Keras variable into ``torch_module``; returns (torch keys, Keras variables, permuted Linears).

    ``flatten_inputs`` maps a Linear's path to the (C, *spatial) shape it receives flattened (from
    ``converter.weights.trace.flatten_inputs`` on the torch module): its columns move to torch's flatten order.
    """
    if not keras_model.built:
        raise ShapeError("the Keras model is not built: call it once on a sample input before transferring weights")
    sink = _Sink(flatten_inputs or {})
    _walk(keras_model, torch_module, "", sink)
    keys = set(torch_module.state_dict().keys())
    check_all_used(sorted(keys - sink.assigned), [v.path for v in keras_model.weights if id(v) not in sink.used],
                   "keras->torch")
    return len(keys), len(keras_model.weights), tuple(sink.permuted)
