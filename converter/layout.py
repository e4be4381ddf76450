"""The layout contract: which axis order each model input/output uses, and the only place tensors are permuted.

A tensor's *logical* order is the ONNX/PyTorch one (NCHW for images). Inside the Keras builder each tensor
carries a permutation ``perm`` with ``actual = logical.transpose(perm)``; NHWC is ``(0, 2, 3, 1)``.
"""
from __future__ import annotations

from enum import Enum
from typing import Sequence

import numpy as np


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"
    NCL = "NCL"
    NLC = "NLC"
    NCDHW = "NCDHW"
    NDHWC = "NDHWC"
    NONE = "none"  # no channel axis to speak of: the order is the model's own

    @property
    def channels_last(self) -> bool:
        return self in (Layout.NHWC, Layout.NLC, Layout.NDHWC)


_FIRST = {3: Layout.NCL, 4: Layout.NCHW, 5: Layout.NCDHW}
_LAST = {3: Layout.NLC, 4: Layout.NHWC, 5: Layout.NDHWC}


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_last_perm(rank: int) -> tuple[int, ...]:
    """Logical channels-first -> channels-last, e.g. (0, 2, 3, 1) for rank 4."""
    return (0, *range(2, rank), 1)


def invert(perm: Sequence[int]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)


def compose_axes(current: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    """Axes that turn an array stored in ``current`` order into ``target`` order (both relative to logical)."""
    inv = invert(current)
    return tuple(inv[t] for t in target)


def layout_for(rank: int, channels_last: bool) -> Layout:
    table = _LAST if channels_last else _FIRST
    return table.get(rank, Layout.NONE)


def to_layout(array: np.ndarray, source: Layout, target: Layout) -> np.ndarray:
    """Permute ``array`` from ``source`` to ``target`` layout (channels-first <-> channels-last only)."""
    if source == target or source == Layout.NONE or target == Layout.NONE:
        return array
    rank = array.ndim
    if source.channels_last == target.channels_last:
        return array
    if target.channels_last:
        return np.ascontiguousarray(np.transpose(array, channels_last_perm(rank)))
    return np.ascontiguousarray(np.transpose(array, invert(channels_last_perm(rank))))
