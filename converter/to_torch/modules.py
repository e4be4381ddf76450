"""Plain-PyTorch building blocks the ONNX -> PyTorch route puts into converted models.

Nothing here imports onnx2torch or crossport-only code at run time, so an ExportedProgram or TorchScript file
traced through these modules loads with plain torch. ONNX LSTM and GRU (``linear_before_reset=1``) become
``nn.LSTM`` / ``nn.GRU`` (PyTorch's fused recurrent kernel, not a Python loop of per-step matmuls unrolled into
the exported graph), their weights moved into PyTorch's gate order.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


def _select(outputs: tuple[torch.Tensor, ...], n: int) -> Any:
    """onnx2torch indexes a module's result only when the ONNX node declares several outputs."""
    return outputs[0] if n == 1 else outputs[:n]


def _directions(direction: str) -> tuple[bool, ...]:
    """Per ONNX direction: a tuple of 'reverse?' flags, one per direction slot."""
    return {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}[direction]


def _gates(t: torch.Tensor, order: Sequence[int]) -> torch.Tensor:
    """Reorder the gate blocks along dim 0 (ONNX's gate order -> PyTorch's)."""
    return torch.cat([t.chunk(len(order))[k] for k in order])


def _torch_rnn(kind: type, w: torch.Tensor, r: torch.Tensor, bw: torch.Tensor, br: torch.Tensor,
               order: Sequence[int]) -> nn.Module:
    """An ``nn.LSTM``/``nn.GRU`` (one layer, seq-major) holding ONNX W/R/Wb/Rb, gates in PyTorch's order."""
    rnn = kind(int(w.shape[-1]), int(r.shape[-1]), bidirectional=w.shape[0] == 2)
    with torch.no_grad():
        for d, suffix in enumerate(("_l0", "_l0_reverse")[: w.shape[0]]):
            for name, value in (("weight_ih", w[d]), ("weight_hh", r[d]), ("bias_ih", bw[d]), ("bias_hh", br[d])):
                getattr(rnn, name + suffix).copy_(_gates(value, order))
    return rnn


def _to_onnx_y(y: torch.Tensor, dirs: int) -> torch.Tensor:
    """PyTorch's (seq, batch, dirs * H) output as ONNX's Y: (seq, dirs, batch, H)."""
    if dirs == 1:
        return y.unsqueeze(1)
    return y.unflatten(2, (dirs, -1)).transpose(1, 2)


class OnnxLSTM(nn.Module):
    """ONNX LSTM (default activations, no peepholes) as an ``nn.LSTM`` (``self.rnn``): PyTorch's fused kernel,
    weights in its gate order (ONNX i, o, f, c -> PyTorch i, f, g, o). This module only adapts ONNX's tensor
    conventions (layout, reverse direction, Y's direction axis)."""

    def __init__(self, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None, direction: str, layout: int,
                 n_outputs: int = 3) -> None:
        super().__init__()
        self.n_outputs = n_outputs  # the ONNX node may declare only Y (then the module returns a tensor)
        self.hidden_size = int(r.shape[-1])
        self.reverse = _directions(direction)
        self.layout = layout
        self.onnx_shapes = (tuple(w.shape), tuple(r.shape))
        hsz = self.hidden_size
        b = b if b is not None else torch.zeros(w.shape[0], 8 * hsz)
        # Keras' LSTM has one bias: ONNX's Wb + Rb in bias_ih, bias_hh a frozen zero (same sum, same count)
        self.rnn = _torch_rnn(nn.LSTM, w, r, b[:, : 4 * hsz] + b[:, 4 * hsz:], torch.zeros_like(b[:, 4 * hsz:]),
                              (0, 2, 3, 1))
        for name, p in self.rnn.named_parameters():
            p.requires_grad_(not name.startswith("bias_hh"))

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None, c0: torch.Tensor | None = None) -> Any:
        return _select(self._run(x, h0, c0), self.n_outputs)

    def _run(self, x: torch.Tensor, h0: torch.Tensor | None,
             c0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.layout == 1:
            x = x.transpose(0, 1)  # -> (seq, batch, in)
            h0 = h0.transpose(0, 1) if h0 is not None else None
            c0 = c0.transpose(0, 1) if c0 is not None else None
        state = None
        if h0 is not None or c0 is not None:
            zeros = x.new_zeros(len(self.reverse), x.shape[1], self.hidden_size)
            state = (h0 if h0 is not None else zeros, c0 if c0 is not None else zeros)
        backward_only = self.reverse == (True,)
        y, (y_h, y_c) = self.rnn(x.flip(0) if backward_only else x, state)
        y = _to_onnx_y(y.flip(0) if backward_only else y, len(self.reverse))
        if self.layout == 1:
            return y.permute(2, 0, 1, 3), y_h.transpose(0, 1), y_c.transpose(0, 1)
        return y, y_h, y_c


class OnnxGRU(nn.Module):
    """ONNX GRU (default activations). ``linear_before_reset=1`` is Keras' ``reset_after=True`` and PyTorch's
    formulation: an ``nn.GRU`` (``self.rnn``, gates z, r, h -> PyTorch r, z, n; Keras keeps two biases too: bias
    shape (2, 3H)). ``reset_after=False`` has no PyTorch kernel: a step loop over ONNX-ordered parameters."""

    def __init__(self, w: torch.Tensor, r: torch.Tensor, b: torch.Tensor | None, direction: str, layout: int,
                 linear_before_reset: int, n_outputs: int = 2) -> None:
        super().__init__()
        self.n_outputs = n_outputs
        self.hidden_size = int(r.shape[-1])
        self.reverse = _directions(direction)
        self.layout = layout
        self.linear_before_reset = bool(linear_before_reset)
        self.onnx_shapes = (tuple(w.shape), tuple(r.shape))
        b = b if b is not None else torch.zeros(w.shape[0], 6 * self.hidden_size)
        if self.linear_before_reset:
            self.rnn = _torch_rnn(nn.GRU, w, r, b[:, : 3 * self.hidden_size], b[:, 3 * self.hidden_size:], (1, 0, 2))
            return
        self.weight_ih = nn.Parameter(w.clone())  # (dirs, 3H, in), gates z, r, h
        self.weight_hh = nn.Parameter(r.clone())  # (dirs, 3H, H)
        self.bias_ih = nn.Parameter(b[:, : 3 * self.hidden_size].clone())
        self.bias_hh = nn.Parameter(b[:, 3 * self.hidden_size:].clone())

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> Any:
        return _select(self._run(x, h0), self.n_outputs)

    def _run(self, x: torch.Tensor, h0: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.layout == 1:
            x = x.transpose(0, 1)
            h0 = h0.transpose(0, 1) if h0 is not None else None
        if self.linear_before_reset:
            backward_only = self.reverse == (True,)
            y, y_h = self.rnn(x.flip(0) if backward_only else x, h0)
            y = _to_onnx_y(y.flip(0) if backward_only else y, len(self.reverse))
            return (y.permute(2, 0, 1, 3), y_h.transpose(0, 1)) if self.layout == 1 else (y, y_h)
        seq, batch = x.shape[0], x.shape[1]
        hsz = self.hidden_size
        ys, hs = [], []
        for d, rev in enumerate(self.reverse):
            h = h0[d] if h0 is not None else x.new_zeros(batch, hsz)
            xw = torch.matmul(x, self.weight_ih[d].t()) + self.bias_ih[d]  # (seq, batch, 3H)
            w_hh, b_hh = self.weight_hh[d], self.bias_hh[d]
            outs: list[torch.Tensor] = []
            steps = range(seq - 1, -1, -1) if rev else range(seq)
            for t in steps:
                xz, xr, xh = xw[t].chunk(3, dim=-1)
                hz = torch.matmul(h, w_hh[:hsz].t()) + b_hh[:hsz]
                hr = torch.matmul(h, w_hh[hsz:2 * hsz].t()) + b_hh[hsz:2 * hsz]
                z = torch.sigmoid(xz + hz)
                r = torch.sigmoid(xr + hr)
                if self.linear_before_reset:
                    hh = r * (torch.matmul(h, w_hh[2 * hsz:].t()) + b_hh[2 * hsz:])
                else:
                    hh = torch.matmul(r * h, w_hh[2 * hsz:].t()) + b_hh[2 * hsz:]
                n = torch.tanh(xh + hh)
                h = (1 - z) * n + z * h
                outs.append(h)
            if rev:
                outs.reverse()
            ys.append(torch.stack(outs, 0))
            hs.append(h)
        y, y_h = torch.stack(ys, 1), torch.stack(hs, 0)
        if self.layout == 1:
            return y.permute(2, 0, 1, 3), y_h.transpose(0, 1)
        return y, y_h


_REDUCERS = {
    "ReduceMean": lambda x, d, k: torch.mean(x, dim=d, keepdim=k),
    "ReduceSum": lambda x, d, k: torch.sum(x, dim=d, keepdim=k),
    "ReduceMax": lambda x, d, k: torch.amax(x, dim=d, keepdim=k),
    "ReduceMin": lambda x, d, k: torch.amin(x, dim=d, keepdim=k),
    "ReduceProd": lambda x, d, k: _prod(x, d, k),
    "ReduceL1": lambda x, d, k: torch.sum(torch.abs(x), dim=d, keepdim=k),
    "ReduceL2": lambda x, d, k: torch.sqrt(torch.sum(x * x, dim=d, keepdim=k)),
    "ReduceLogSum": lambda x, d, k: torch.log(torch.sum(x, dim=d, keepdim=k)),
    "ReduceLogSumExp": lambda x, d, k: torch.logsumexp(x, dim=d, keepdim=k),
    "ReduceSumSquare": lambda x, d, k: torch.sum(x * x, dim=d, keepdim=k),
}
REDUCE_OPS = tuple(_REDUCERS)


def _prod(x: torch.Tensor, dims: Sequence[int], keepdim: bool) -> torch.Tensor:
    for d in sorted((d % x.dim() for d in dims), reverse=True):
        x = torch.prod(x, dim=d, keepdim=keepdim)
    return x


class OnnxReduce(nn.Module):
    """Reduce* with the axes known at conversion time (opset 18 passes them as an input)."""

    def __init__(self, op: str, axes: tuple[int, ...] | None, keepdims: bool, noop_with_empty_axes: bool) -> None:
        super().__init__()
        self.op, self.axes, self.keepdims, self.noop = op, axes, keepdims, noop_with_empty_axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.axes:
            if self.noop:
                return x
            dims = list(range(x.dim()))
        else:
            dims = list(self.axes)
        return _REDUCERS[self.op](x, dims, self.keepdims)


# ---- shape ops with their shape arguments baked in (so torch.export sees no data-dependent control flow) ----


def reshape_static(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """ONNX Reshape (allowzero=0): 0 copies the input dimension. Entries may be SymInts (dynamic batch);
    only Python ints are compared, so tracing adds no guard on them."""
    dims = [x.shape[i] if isinstance(s, int) and s == 0 else s for i, s in enumerate(shape)]
    return torch.reshape(x, dims)


def slice_static(x: torch.Tensor, starts: tuple[int, ...], ends: tuple[int, ...], axes: tuple[int, ...],
                 steps: tuple[int, ...]) -> torch.Tensor:
    """ONNX Slice with constant starts/ends/axes/steps (negative steps via flip)."""
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = axis % x.dim()
        if step < 0:
            x = torch.flip(x, dims=[axis])
            start, end, step = -start - 1, -end - 1, -step
        big = 2**62
        start = max(-big, min(start, big))
        end = max(-big, min(end, big))
        index = [slice(None)] * x.dim()
        index[axis] = slice(start, end, step)
        x = x[tuple(index)]
    return x


def expand_static(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """ONNX Expand: bidirectional broadcast to ``shape``."""
    rank = max(x.dim(), len(shape))
    xs = [1] * (rank - x.dim()) + list(x.shape)
    ss = [1] * (rank - len(shape)) + list(shape)
    target = [a if isinstance(b, int) and b == 1 else b for a, b in zip(xs, ss)]
    return x.reshape(xs).expand(target)


def constant_of_shape(shape: Sequence[int], value: float, dtype: torch.dtype) -> torch.Tensor:
    """ONNX ConstantOfShape with a (possibly symbolic) shape."""
    return torch.full(list(shape), value, dtype=dtype)


def pad_static(x: torch.Tensor, pads: tuple[int, ...], mode: str, value: float) -> torch.Tensor:
    """ONNX Pad with constant pads, given in ``F.pad`` order (last axis first, zero pairs of leading axes
    dropped, which the non-constant modes require)."""
    return torch.nn.functional.pad(x, list(pads), mode=mode, value=value if mode == "constant" else None)


def crop_shifted(y: torch.Tensor, x: torch.Tensor, spec: tuple[tuple[int, int, int], ...]) -> torch.Tensor:
    """The outputs of a conv on ``x`` behind an asymmetric zero pad, from the same conv with a larger symmetric
    padding (``optimize._shifted``): per spatial axis (start, pads - kernel extent, stride)."""
    for axis, (start, extra, stride) in enumerate(spec, start=2):
        y = y.narrow(axis, start, (x.shape[axis] + extra) // stride + 1)
    return y


def tile_static(x: torch.Tensor, repeats: Sequence[int]) -> torch.Tensor:
    return x.repeat(*repeats)


def unsqueeze_static(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    rank = x.dim() + len(axes)
    for a in sorted(a % rank for a in axes):
        x = torch.unsqueeze(x, a)
    return x


def squeeze_static(x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = torch.squeeze(x, a)
    return x


class ChannelsFirst(nn.Module):
    """Wrap a channels-last model so it takes and returns channels-first rank-4 tensors (``--nchw``)."""

    def __init__(self, inner: nn.Module, inputs_nhwc: tuple[bool, ...], outputs_nhwc: tuple[bool, ...]) -> None:
        super().__init__()
        self.inner = inner
        self.inputs_nhwc = inputs_nhwc
        self.outputs_nhwc = outputs_nhwc

    def forward(self, *xs: torch.Tensor):  # noqa: ANN201 - one tensor or a tuple, like the wrapped model
        feeds = [x.permute(0, 2, 3, 1) if flag else x for x, flag in zip(xs, self.inputs_nhwc)]
        out = self.inner(*feeds)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        outs = tuple(o.permute(0, 3, 1, 2) if flag else o for o, flag in zip(outs, self.outputs_nhwc))
        return outs if isinstance(out, (tuple, list)) else outs[0]
