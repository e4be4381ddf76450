"""ONNX LSTM / GRU -> Keras LSTM / GRU layers (wrapped in Bidirectional for two directions), trainable.

Weight layouts (idioms.md): ONNX stacks gates as LSTM i,o,f,c and GRU z,r,h with W (dirs, G*H, I), R (dirs, G*H, H),
B (dirs, 2*G*H) = [Wb, Rb]. Keras LSTM wants kernel (I, 4H) in i,f,c,o with one bias Wb + Rb; Keras GRU keeps z,r,h
and, with ``reset_after=True`` (= ONNX ``linear_before_reset=1``, what PyTorch exports), a (2, 3H) bias.
ONNX's sequence-first X (T, B, I) is read batch-first through the tensor's layout permutation, so the usual
``Transpose`` around a batch_first PyTorch RNN costs nothing; Y (T, dirs, B, H) comes back as (B, T, dirs, H)
with the permutation recorded.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.errors import UnsupportedError
from converter.keras_builder.context import KT, BuildContext
from converter.keras_builder.registry import handles

_DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}


def _check(ctx: BuildContext, node: Any, dirs: int) -> None:
    acts = ctx.attr(node, "activations", None)
    if acts:
        names = [a.decode() if isinstance(a, bytes) else a for a in acts]
        if names != _DEFAULT_ACTS[node.op_type] * dirs:
            raise UnsupportedError(f"{node.op_type} node {node.name!r}: activations {names} (only the defaults)")
    if ctx.attr(node, "clip", None) is not None:
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: cell clipping is not supported")
    if int(ctx.attr(node, "input_forget", 0)):
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: input_forget=1 is not supported")
    if int(ctx.attr(node, "layout", 0)):
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: layout=1 is not supported")
    if len(node.input) > 4 and node.input[4]:
        raise UnsupportedError(f"{node.op_type} node {node.name!r}: sequence_lens (variable lengths) is not supported")
    if node.op_type == "LSTM" and len(node.input) > 7 and node.input[7]:
        raise UnsupportedError(f"LSTM node {node.name!r}: peephole weights are not supported")


def _lstm_weights(w: np.ndarray, r: np.ndarray, b: np.ndarray | None, hidden: int) -> list[np.ndarray]:
    order = [0, 2, 3, 1]  # ONNX i,o,f,c -> Keras i,f,c,o

    def gates(m: np.ndarray) -> np.ndarray:
        return np.concatenate([m[k * hidden:(k + 1) * hidden] for k in order], axis=0)

    bias = np.zeros(4 * hidden, "float32") if b is None else gates(b[:4 * hidden] + b[4 * hidden:])
    return [gates(w).T.astype("float32"), gates(r).T.astype("float32"), bias.astype("float32")]


def _gru_weights(w: np.ndarray, r: np.ndarray, b: np.ndarray | None, hidden: int) -> list[np.ndarray]:
    bias = np.zeros((2, 3 * hidden), "float32") if b is None else b.reshape(2, 3 * hidden)
    return [w.T.astype("float32"), r.T.astype("float32"), bias.astype("float32")]


def _constant_state(ctx: BuildContext, name: str) -> np.ndarray | None:
    """The value an initial state has for every batch row when it is one: a constant (a zero state the exporter
    folded for a static batch) or a constant expanded to a batch (``Expand`` of zeros). (dirs, 1 or B, H)."""
    bv = ctx.batch_values.get(name)
    if bv is not None and name not in ctx.env:  # expanded to a batch computed from shapes (B*H over rows)
        rows = [np.asarray(v) for v in (bv.at_2, bv.at_3)]
        if all(r.ndim == 3 and r.shape[1] > 0 and np.array_equal(r, np.broadcast_to(r[:, :1], r.shape))
               for r in rows) and np.array_equal(rows[0][:, :1], rows[1][:, :1]):
            return rows[0][:, :1]
    kt = ctx.get(name)
    if kt.is_const:
        return np.asarray(kt.value)
    producer = ctx.nodes_by_output.get(name)
    if producer is not None and producer.op_type == "Expand" and ctx.has(producer.input[0]) \
            and ctx.get(producer.input[0]).is_const:
        return np.asarray(ctx.get(producer.input[0]).value)
    return None


def _state(ctx: BuildContext, node: Any, index: int, direction: int, x: Any) -> Any | None:
    """Initial state ``direction`` of input ``index`` (dirs, B, H) as a (B, H) tensor; None for a zero state
    (Keras' own default). A constant state is broadcast to the batch of the RNN's input ``x`` (B, T, I) -- not the
    model's: an RNN over image rows runs on B*H sequences (timm sequencer2d)."""
    from keras import ops

    if len(node.input) <= index or not node.input[index]:
        return None
    const = _constant_state(ctx, node.input[index])
    if const is not None:
        if const.ndim != 3 or len({const.shape[0], 1}) > 2:
            raise UnsupportedError(f"{node.op_type} node {node.name!r}: an initial state of shape {const.shape}")
        rows = const[direction if const.shape[0] > 1 else 0]
        if not np.any(rows):
            return None
        if np.all(rows == rows[:1]):
            rows = rows[:1]
        elif x.shape[0] != rows.shape[0]:  # differs per row: only where the RNN's batch is that fixed size
            raise UnsupportedError(f"{node.op_type} node {node.name!r}: a constant initial state that differs "
                                   "per batch row needs a fixed batch of that size")
        zeros = ops.zeros_like(x[:, 0, :1])  # (B, 1), exact whatever x holds
        return ops.add(zeros, rows.astype("float32"))
    kt = ctx.to_identity(ctx.get(node.input[index]))
    return ops.take(kt.value, direction, axis=0)


@handles("LSTM", "GRU")
def recurrent(ctx: BuildContext, node: Any) -> list[KT]:
    import keras
    from keras import ops

    kind = node.op_type
    direction = ctx.attr(node, "direction", "forward")
    dirs = 2 if direction == "bidirectional" else 1
    _check(ctx, node, dirs)
    hidden = int(ctx.attr(node, "hidden_size"))
    w = ctx.const(node.input[1], node, "input weights")
    r = ctx.const(node.input[2], node, "recurrent weights")
    b = ctx.optional_const(node, 3, "biases")
    if kind == "GRU" and not int(ctx.attr(node, "linear_before_reset", 0)):
        raise UnsupportedError(f"GRU node {node.name!r}: linear_before_reset=0 has no Keras GRU equivalent "
                               "(Keras reset_after=False applies the reset gate differently from ONNX)")
    x = ctx.to_perm(ctx.get(node.input[0]), (1, 0, 2))  # actual (B, T, I)
    name = ctx.layer_name(node, weight=node.input[1] if "." in node.input[1] else None)

    steps = ctx.shapes[node.input[0]].dims[0] if node.input[0] in ctx.shapes else None
    unroll = isinstance(steps, int) and 0 < steps <= ctx.unroll_max_steps  # why: BuildOptions.unroll_max_steps

    def cell(go_backwards: bool, suffix: str) -> Any:
        common = dict(units=hidden, return_sequences=True, return_state=True, go_backwards=go_backwards,
                      unroll=unroll, name=name + suffix)
        if kind == "LSTM":
            return keras.layers.LSTM(activation="tanh", recurrent_activation="sigmoid", **common)
        return keras.layers.GRU(activation="tanh", recurrent_activation="sigmoid", reset_after=True, **common)

    n_states = 2 if kind == "LSTM" else 1
    init = [[_state(ctx, node, 5 + k, d, x.value) for k in range(n_states)] for d in range(dirs)]
    given = [s is not None for d in init for s in d]
    if any(given) and not all(given):  # Keras takes all states or none: explicit zeros beside a given one
        zero = ops.add(ops.zeros_like(x.value[:, 0, :1]), np.zeros(hidden, "float32"))
        init = [[zero if s is None else s for s in d] for d in init]
    if kind == "LSTM" and b is not None:
        ctx.merged_params += 4 * hidden * dirs  # two PyTorch biases, one Keras bias
    weights = [(_lstm_weights if kind == "LSTM" else _gru_weights)(w[d], r[d], None if b is None else b[d], hidden)
               for d in range(dirs)]
    if dirs == 1:
        layer = cell(direction == "reverse", "")
        states = init[0] if all(s is not None for s in init[0]) else None
        outs = layer(x.value, initial_state=states)
        seq, finals = outs[0], [outs[1:]]
        if direction == "reverse":
            seq = ops.flip(seq, axis=1)  # Keras returns go_backwards sequences in processing order
        layer.set_weights(weights[0])
        seqs = [seq]
    else:
        layer = keras.layers.Bidirectional(cell(False, "_fw"), backward_layer=cell(True, "_bw"), merge_mode=None,
                                           name=name)
        flat = [s for d in init for s in d]
        states = flat if all(s is not None for s in flat) else None
        outs = layer(x.value, initial_state=states)
        seqs = [outs[0], outs[1]]  # Bidirectional re-reverses the backward sequence to input time order
        finals = [outs[2:2 + n_states], outs[2 + n_states:]]
        layer.forward_layer.set_weights(weights[0])
        layer.backward_layer.set_weights(weights[1])
    # Y logical (T, dirs, B, H); actual (B, T, dirs, H) -> perm (2, 0, 1, 3)
    y = KT(ops.stack(seqs, axis=2), (2, 0, 1, 3))
    results = [y]
    for k in range(n_states):  # Y_h, Y_c logical (dirs, B, H); actual (B, dirs, H) -> perm (1, 0, 2)
        results.append(KT(ops.stack([f[k] for f in finals], axis=1), (1, 0, 2)))
    return results[:len(node.output)]
