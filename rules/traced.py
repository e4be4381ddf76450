"""What one traced torch forward pass says about a call, and the exact channels_last code that follows from it.

In a channels_last rewrite every image tensor is held NHWC, so ``x.view``, ``x.squeeze(-1)``, ``x.permute`` or
``x.size()`` mean something else unless the code knows each tensor's rank and which of them Keras holds with the
channel axis moved last. ``--input-shape`` runs the original once (``converter.rewrite.torch_trace``) and records
that per call; the functions here turn it into Keras code that computes exactly what torch computed.

A tensor is *moved* when the Keras code holds ``moveaxis(t, 1, -1)`` of the torch tensor ``t`` (conv/pool/norm
activations and image inputs), *plain* when it holds ``t`` itself (tokens, embeddings, Linear/RNN outputs,
anything of rank <= 2).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import libcst as cst

from rules.cst_tools import arg, call, lit, literal, tuple_of


@dataclass(frozen=True)
class TracedCall:
    """One call site as the torch run saw it: shapes in torch (channels-first) order and the Keras forms."""

    before: tuple[int, ...]
    before_moved: bool
    #: the result's shape (a ``torch.Size`` result counts as one); None when it is neither.
    after: tuple[int, ...] | None
    after_moved: bool

    @property
    def rank(self) -> int:
        return len(self.before)


def keras_axis(dim: int, rank: int, moved: bool) -> int:
    """The Keras axis holding torch axis ``dim`` (any sign) of a ``rank``-D tensor in the given form."""
    d = dim % rank if rank else dim
    if not moved or rank < 3 or d == 0:
        return d
    return rank - 1 if d == 1 else d - 1


def torch_order(x: cst.BaseExpression, rank: int, moved: bool) -> cst.BaseExpression:
    """The torch-ordered (channels-first) value of Keras tensor ``x``."""
    return call("keras.ops.moveaxis", arg(x), arg(lit(-1)), arg(lit(1))) if moved and rank >= 3 else x


def keras_form(y: cst.BaseExpression, rank: int, moved: bool) -> cst.BaseExpression:
    """Torch-ordered ``y`` in the form Keras holds it."""
    return call("keras.ops.moveaxis", arg(y), arg(lit(1)), arg(lit(-1))) if moved and rank >= 3 else y


def _ints(node: cst.BaseExpression | None) -> tuple[int, ...] | None:
    value = literal(node, None) if node is not None else None
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    return None


def permute(x: cst.BaseExpression, perm: Sequence[int], fact: TracedCall) -> cst.BaseExpression:
    """``x.permute(perm)`` as one Keras transpose from the input's form to the output's (``x`` when identity)."""
    rank = fact.rank
    keras_perm = [0] * rank
    for j, p in enumerate(perm):
        keras_perm[keras_axis(j, rank, fact.after_moved)] = keras_axis(p, rank, fact.before_moved)
    if keras_perm == list(range(rank)):
        return x
    swapped = [i for i, p in enumerate(keras_perm) if p != i]
    if len(swapped) == 2:
        return call("keras.ops.swapaxes", arg(x), arg(lit(swapped[0])), arg(lit(swapped[1])))
    return call("keras.ops.transpose", arg(x), arg(tuple_of([lit(p) for p in keras_perm]), "axes"))


def permutation(node: cst.BaseExpression | None, rank: int) -> tuple[int, ...] | None:
    perm = _ints(node)
    return None if perm is None or len(perm) != rank else tuple(p % rank for p in perm)


def swap(dim0: cst.BaseExpression, dim1: cst.BaseExpression, rank: int) -> tuple[int, ...] | None:
    """The permutation ``x.transpose(dim0, dim1)`` applies."""
    a, b = _ints(dim0), _ints(dim1)
    if a is None or b is None or len(a) != 1 or len(b) != 1:
        return None
    perm = list(range(rank))
    perm[a[0] % rank], perm[b[0] % rank] = perm[b[0] % rank], perm[a[0] % rank]
    return tuple(perm)


def reshape(x: cst.BaseExpression, shape: cst.BaseExpression, fact: TracedCall) -> cst.BaseExpression | None:
    """``x.view(shape)`` / ``x.reshape(shape)``: reshape the torch-ordered tensor, then back to the output's form.

    Flattening a feature map to ``(N, C*H*W)`` stays an NHWC flatten: the weight transfer permutes the rows of the
    Linear that reads it (``converter.weights.trace``). A 1x1 feature map has the same element order in NCHW and
    NHWC, so it needs no transpose either way."""
    before, after = fact.before, fact.after
    if after is None:
        return None
    ones_in = all(d == 1 for d in before[2:])
    flattening = len(before) >= 3 and len(after) == 2 and after == (before[0], math.prod(before[1:]))
    source = x if ones_in or flattening else torch_order(x, len(before), fact.before_moved)
    if not (fact.after_moved and len(after) >= 3):
        return call("keras.ops.reshape", arg(source), arg(shape))
    if all(d == 1 for d in after[2:]) and isinstance(shape, (cst.Tuple, cst.List)) and len(shape.elements) == len(after):
        dims = [e.value for e in shape.elements]
        return call("keras.ops.reshape", arg(source), arg(tuple_of([dims[0], *dims[2:], dims[1]])))
    return keras_form(call("keras.ops.reshape", arg(source), arg(shape)), len(after), True)


def squeeze(x: cst.BaseExpression, dim: cst.BaseExpression, fact: TracedCall, expand: bool) -> cst.BaseExpression | None:
    """``x.squeeze(dim)`` (``expand``: ``x.unsqueeze(dim)``) from the input's form to the output's."""
    d = _ints(dim)
    if d is None or len(d) != 1 or fact.after is None:
        return None
    op = "keras.ops.expand_dims" if expand else "keras.ops.squeeze"
    rank_in, rank_out = fact.rank, len(fact.after)
    axis = d[0] % (rank_out if expand else rank_in)
    moved_in = fact.before_moved and rank_in >= 3
    if moved_in and not (expand and axis == 1):
        # Squeezing/inserting a spatial axis where Keras keeps it leaves a moved tensor; squeezing the (size 1)
        # channel axis leaves the other axes in torch order, i.e. a plain one.
        simple_moved = rank_out >= 3 and axis != 1
        if simple_moved == (fact.after_moved and rank_out >= 3):
            k = keras_axis(axis, rank_out if expand else rank_in, True)
            return call(op, arg(x), arg(lit(k)) if expand else arg(lit(k), "axis"))
    y = call(op, arg(torch_order(x, rank_in, fact.before_moved)), arg(lit(axis)) if expand else arg(lit(axis), "axis"))
    return keras_form(y, rank_out, fact.after_moved)


def reduce(op: str, x: cst.BaseExpression, dim: cst.BaseExpression, keepdim: cst.BaseExpression | None,
           fact: TracedCall) -> cst.BaseExpression | None:
    """``x.mean(dim, keepdim)`` and the other reductions (``op``: the keras.ops name) from form to form."""
    dims = _ints(dim)
    keep = literal(keepdim, None) if keepdim is not None else False
    if dims is None or not isinstance(keep, bool) or fact.after is None:
        return None
    rank_in, rank_out = fact.rank, len(fact.after)
    axes = tuple(sorted({d % rank_in for d in dims}))
    extra = [arg(keepdim, "keepdims")] if keepdim is not None else []
    if fact.before_moved and rank_in >= 3:
        # Reducing the Keras axes that hold the same torch axes keeps the rest in Keras order: moved while the
        # channel axis survives (or keepdims), plain once it is gone.
        simple_moved = rank_out >= 3 and (keep or 1 not in axes)
        if simple_moved == (fact.after_moved and rank_out >= 3):
            mapped = [keras_axis(a, rank_in, True) for a in axes]
            return call(f"keras.ops.{op}", arg(x), arg(_axis_node(mapped), "axis"), *extra)
    y = call(f"keras.ops.{op}", arg(torch_order(x, rank_in, fact.before_moved)), arg(_axis_node(list(axes)), "axis"),
             *extra)
    return keras_form(y, rank_out, fact.after_moved)


def _axis_node(axes: list[int]) -> cst.BaseExpression:
    return lit(axes[0]) if len(axes) == 1 else tuple_of([lit(a) for a in axes])


def shape_of(x: cst.BaseExpression, fact: TracedCall) -> cst.BaseExpression:
    """``x.size()``: the shape in torch (channels-first) order."""
    return call("keras.ops.shape", arg(torch_order(x, fact.rank, fact.before_moved)))
