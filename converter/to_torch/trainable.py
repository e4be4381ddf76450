"""Decide which tensors of a converted model are trainable ``nn.Parameter``s.

onnx2torch stores ONNX initializers as buffers (onnx2torch#194), and ONNX itself does not say which constants were
weights. When the source is a Keras model we know: a tensor is trainable when its values are (a transposed /
reshaped / split copy of) a Keras trainable weight. Exporters transpose kernels, reshape attention projections
and split recurrent kernels, but never change values, so we match value multisets. Without a Keras reference
(ONNX source, a SavedModel that lists no trainable variables) the reference is the ONNX initializers that feed
weight slots (``converter.to_torch.onnx_weights``); the recurrent modules crossport builds from ONNX W/R/B
(``always``: ``nn.LSTM``/``nn.GRU``) keep their own trainable flags, with or without a reference (the LSTM's
second bias is a frozen zero: Keras' LSTM has one bias).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


@dataclass(frozen=True)
class TrainableSummary:
    trainable: int  # elements in parameters that require grad
    frozen: int  # float elements kept as buffers / frozen
    unmatched_reference: int  # reference trainable elements with no counterpart in the converted model


def _tensors(module: Any) -> list[tuple[str, Any, bool]]:
    """(qualified name, tensor, is_parameter) for every float tensor, shared tensors once."""
    seen: set[int] = set()
    out = []
    for name, p in module.named_parameters(remove_duplicate=True):
        seen.add(id(p))
        out.append((name, p, True))
    for name, b in module.named_buffers(remove_duplicate=True):
        if id(b) in seen or not b.is_floating_point():
            continue
        if name.rsplit(".", 1)[-1] in ("running_mean", "running_var"):
            continue
        out.append((name, b, False))
    return out


def _set(module: Any, qualname: str, trainable: bool) -> None:
    import torch

    owner_name, _, attr = qualname.rpartition(".")
    owner = module.get_submodule(owner_name) if owner_name else module
    value = getattr(owner, attr)
    if trainable:
        if isinstance(value, torch.nn.Parameter):
            value.requires_grad_(True)
            return
        delattr(owner, attr)
        owner.register_parameter(attr, torch.nn.Parameter(value.detach().clone(), requires_grad=True))
    elif isinstance(value, torch.nn.Parameter):
        delattr(owner, attr)
        owner.register_buffer(attr, value.detach().clone())


_MIX = (np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F))
_BLOCK = 1 << 22  # elements per step: the uint64 temporaries stay at 32 MB


def _key(a: np.ndarray) -> tuple[int, int, int]:
    """The multiset of ``a``'s float32 bit patterns, as its size and two sums of a mixing function of each pattern
    (mod 2**64): the same for a transposed, reshaped or permuted copy, and different for different values but with
    probability ~2**-64. It was the sorted values' bytes: 1.2 s per 25 M weights (ResNet50's) against 0.2 s."""
    bits = np.ascontiguousarray(np.asarray(a, dtype=np.float32)).reshape(-1).view(np.uint32)
    h1 = h2 = np.uint64(0)
    with np.errstate(over="ignore"):
        for start in range(0, bits.size, _BLOCK):
            y = bits[start:start + _BLOCK].astype(np.uint64) * _MIX[0]
            y ^= y >> np.uint64(31)
            h1 += np.add.reduce(y, dtype=np.uint64)
            y *= _MIX[1]
            y ^= y >> np.uint64(29)
            h2 += np.add.reduce(y, dtype=np.uint64)
    return int(bits.size), int(h1), int(h2)


class _Leftover:
    """The values of the reference weights no tensor copies whole, as a multiset: sorted distinct values and their
    counts. A tensor is a piece of them when each of its values is there as often as it occurs in the tensor.

    Python ``Counter``s of every value did the same at ~0.5 s per million values: 30 s of InceptionResNetV2's
    conversion, whose 17 M leftover values are kernels the export scaled. A tensor is first looked up at 64 of its
    values, which rejects a scaled or folded kernel without sorting it."""

    def __init__(self, parts: Sequence[np.ndarray]) -> None:
        values = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        self.values, self.counts = np.unique(values, return_counts=True)

    @property
    def empty(self) -> bool:
        return not bool((self.counts > 0).any())

    @property
    def remaining(self) -> int:
        return int(self.counts[self.counts > 0].sum())

    def _where(self, values: np.ndarray) -> np.ndarray | None:
        at = np.minimum(np.searchsorted(self.values, values), len(self.values) - 1)
        return at if bool((self.values[at] == values).all()) else None

    def take(self, values: np.ndarray) -> bool:
        """Remove ``values`` (a multiset) when they are all left; whether they were."""
        if not len(self.values) or self._where(values[np.linspace(0, values.size - 1, 64).astype(np.int64)]) is None:
            return False
        distinct, counts = np.unique(values, return_counts=True)
        at = self._where(distinct)
        if at is None or bool((self.counts[at] < counts).any()):
            return False
        self.counts[at] -= counts
        return True


def assign_trainable(module: Any, reference: Sequence[np.ndarray] | None,
                     always: tuple[type, ...] = ()) -> TrainableSummary:
    """Make the converted module's weights ``nn.Parameter``s: those matching ``reference`` (the source's trainable
    weights) plus every tensor owned by a module of a type in ``always``; or every float initializer when there is
    no reference at all."""
    tensors = _tensors(module)
    if reference is None:
        for name, t, _ in tensors:
            _set(module, name, t.numel() > 1)
        return _summary(module, 0)
    pool: Counter[tuple[int, int, int]] = Counter()
    values_of: dict[tuple[int, int, int], np.ndarray] = {}
    for w in reference:
        key = _key(w)
        pool[key] += 1
        values_of.setdefault(key, w)
    decided: dict[str, bool] = {}
    as_built: set[str] = set()  # parameters a recurrent module froze itself: left alone (nn.LSTM keeps references)
    if always:
        for name, t, is_param in tensors:
            owner = name.rpartition(".")[0]
            if isinstance(module.get_submodule(owner) if owner else module, always):
                decided[name] = t.requires_grad or not is_param
                if is_param and not t.requires_grad:
                    as_built.add(name)
                key = _key(t.detach().cpu().numpy())  # a whole reference weight it copies is accounted for
                if pool.get(key, 0) > 0:
                    pool[key] -= 1
    for name, t, _ in tensors:  # exact copies first (transposes, reshapes)
        if name in decided:
            continue
        key = _key(t.detach().cpu().numpy())
        if pool.get(key, 0) > 0:
            pool[key] -= 1
            decided[name] = True
    leftover = _Leftover([np.asarray(values_of[key], dtype=np.float32).reshape(-1)
                          for key, n in pool.items() for _ in range(n)])
    for name, t, _ in tensors:  # then pieces of a weight (split recurrent kernels, per-gate biases)
        if name in decided or t.numel() <= 1 or leftover.empty:
            continue
        if leftover.take(t.detach().cpu().float().numpy().reshape(-1)):
            decided[name] = True
    for name, _, _ in tensors:
        if name not in as_built:
            _set(module, name, decided.get(name, False))
    return _summary(module, leftover.remaining)


def _summary(module: Any, unmatched: int) -> TrainableSummary:
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    frozen = sum(b.numel() for b in module.buffers() if b.is_floating_point())
    return TrainableSummary(int(trainable), int(frozen), unmatched)
