"""The transforms of reference/idioms.md §2, one function per torch layer type.

Each function receives the torch module, the Keras layer that replaces it, the dotted torch path prefix and a
``Sink`` that checks shapes, assigns, and records which torch keys and Keras variables were used.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import numpy as np


class Sink(Protocol):
    layout: str
    flatten_inputs: dict[str, tuple[int, ...]]

    def put(self, variable: Any, value: np.ndarray, torch_key: str) -> None: ...

    def consume(self, torch_key: str) -> None: ...


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy()


def linear(t: Any, k: Any, path: str, sink: Sink) -> None:
    w = _np(t.weight)
    sample = sink.flatten_inputs.get(path.rstrip("."))
    if sink.layout == "channels_last" and sample is not None and len(sample) >= 2:
        # torch flattened (C, *spatial); the channels_last Keras model flattens (*spatial, C): permute the rows.
        rank = len(sample)
        w = w.reshape((w.shape[0], *sample)).transpose((0, *range(2, rank + 1), 1)).reshape(w.shape[0], -1)
    sink.put(k.kernel, w.T, path + "weight")
    if t.bias is not None:
        sink.put(k.bias, _np(t.bias), path + "bias")


def conv(t: Any, k: Any, path: str, sink: Sink) -> None:
    w = _np(t.weight)
    n = w.ndim
    sink.put(k.kernel, w.transpose((*range(2, n), 1, 0)), path + "weight")
    if t.bias is not None:
        sink.put(k.bias, _np(t.bias), path + "bias")


def batchnorm(t: Any, k: Any, path: str, sink: Sink) -> None:
    if t.weight is not None:
        sink.put(k.gamma, _np(t.weight), path + "weight")
        sink.put(k.beta, _np(t.bias), path + "bias")
    sink.put(k.moving_mean, _np(t.running_mean), path + "running_mean")
    sink.put(k.moving_variance, _np(t.running_var), path + "running_var")
    sink.consume(path + "num_batches_tracked")


def norm(t: Any, k: Any, path: str, sink: Sink) -> None:
    if getattr(t, "weight", None) is not None:
        sink.put(k.gamma, _np(t.weight), path + "weight")
    if getattr(t, "bias", None) is not None:
        sink.put(k.beta, _np(t.bias), path + "bias")


def embedding(t: Any, k: Any, path: str, sink: Sink) -> None:
    sink.put(k.embeddings, _np(t.weight), path + "weight")


def lstm(t: Any, k: Any, path: str, sink: Sink) -> None:
    cell = k.cell
    sink.put(cell.kernel, _np(t.weight_ih_l0).T, path + "weight_ih_l0")
    sink.put(cell.recurrent_kernel, _np(t.weight_hh_l0).T, path + "weight_hh_l0")
    sink.put(cell.bias, _np(t.bias_ih_l0) + _np(t.bias_hh_l0), path + "bias_ih_l0")
    sink.consume(path + "bias_hh_l0")


def _gru_reorder(a: np.ndarray) -> np.ndarray:
    """torch gate blocks (r, z, n) -> Keras (z, r, h) along the first axis."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate([z, r, n], axis=0)


def gru(t: Any, k: Any, path: str, sink: Sink) -> None:
    cell = k.cell
    sink.put(cell.kernel, _gru_reorder(_np(t.weight_ih_l0)).T, path + "weight_ih_l0")
    sink.put(cell.recurrent_kernel, _gru_reorder(_np(t.weight_hh_l0)).T, path + "weight_hh_l0")
    bias = np.stack([_gru_reorder(_np(t.bias_ih_l0)), _gru_reorder(_np(t.bias_hh_l0))])
    sink.put(cell.bias, bias, path + "bias_ih_l0")
    sink.consume(path + "bias_hh_l0")


def multihead_attention(t: Any, k: Any, path: str, sink: Sink) -> None:
    if t.in_proj_weight is None:
        from converter.weights.errors import WeightMappingError

        raise WeightMappingError(f"{path}q/k/v_proj_weight: separate kdim/vdim projections are not supported")
    e, h = t.embed_dim, t.num_heads
    d = e // h
    wq, wk, wv = np.split(_np(t.in_proj_weight), 3, axis=0)
    denses = (k._query_dense, k._key_dense, k._value_dense)
    biases = np.split(_np(t.in_proj_bias), 3) if t.in_proj_bias is not None else (None, None, None)
    for dense, w, b in zip(denses, (wq, wk, wv), biases):
        sink.put(dense.kernel, w.T.reshape(e, h, d), path + "in_proj_weight")
        if b is not None:
            sink.put(dense.bias, b.reshape(h, d), path + "in_proj_bias")
    sink.put(k._output_dense.kernel, _np(t.out_proj.weight).T.reshape(h, d, e), path + "out_proj.weight")
    if t.out_proj.bias is not None:
        sink.put(k._output_dense.bias, _np(t.out_proj.bias), path + "out_proj.bias")


def handlers() -> list[tuple[type, Callable[[Any, Any, str, Sink], None]]]:
    """(torch class, transfer function), most specific first; imported lazily with torch."""
    import torch.nn as nn

    return [
        (nn.Linear, linear),
        (nn.modules.conv._ConvNd, conv),
        (nn.modules.batchnorm._BatchNorm, batchnorm),
        (nn.LayerNorm, norm),
        (nn.GroupNorm, norm),
        (nn.modules.instancenorm._InstanceNorm, norm),
        (nn.Embedding, embedding),
        (nn.LSTM, lstm),
        (nn.GRU, gru),
        (nn.MultiheadAttention, multihead_attention),
    ]
