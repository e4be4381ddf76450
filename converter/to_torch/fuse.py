"""Fusions that give a converted module PyTorch's own kernels where the ONNX graph spelled an op out (issue #19).

tf2onnx writes Keras' exact GELU as ``0.5 * x * (1 - erf(-x * 0.70710677))`` (TF's ``erfc`` form; ``Erfc`` is
repaired to ``1 - Erf`` in ``tf_onnx_repair``), a Dense layer on a rank-4 tensor as ``Reshape -> MatMul -> Add
bias -> Reshape`` and LayerNormalization as mean / variance / rsqrt arithmetic. onnx2torch converts each node to
its own module, so ConvNeXtTiny ran six elementwise passes over its largest activations per GELU (erf, neg, three
muls, sub) plus the LayerNorm arithmetic: erf/mul/neg/sub kernels took 51 of 177 ms per call (torch.profiler,
one thread) where torchvision's convnext_tiny spends 7.5 ms in ``aten::gelu`` and 2 ms in ``native_layer_norm``.
``fuse_gelu`` puts ``F.gelu`` back, ``fuse_silu`` ``F.silu`` (EfficientNet's swish was a sigmoid and a mul,
two passes and two new tensors), ``fuse_matmul_bias`` makes MatMul + bias one ``F.linear`` on the weight's
transposed view (the weight stays the same parameter, so trainable flags and names are untouched),
``fuse_layer_norm`` puts ``F.layer_norm`` back over the channel axis. Every rewrite is exact up to float rounding
and checked against the ONNX graph by the route's verification at its usual tolerance.
"""
from __future__ import annotations

import math
from typing import Any

_GELU_SCALE = 1.0 / math.sqrt(2.0)


def _module(gm: Any, node: Any) -> Any:
    return gm.get_submodule(node.target) if getattr(node, "op", None) == "call_module" else None


def _binary(gm: Any, node: Any, name: str) -> tuple[Any, Any] | None:
    """The two operands of an onnx2torch elementwise ``name`` (mul/add/sub) node, else None."""
    import torch

    mod = _module(gm, node)
    if type(mod).__name__ != "OnnxBinaryMathOperation" or mod.broadcast or len(node.args) != 2:
        return None
    return tuple(node.args) if mod.math_op_function is getattr(torch, name) else None  # type: ignore[return-value]


def _unary(gm: Any, node: Any, kind: str) -> Any:
    """The operand of an onnx2torch ``Onnx{kind}`` module node, else None."""
    mod = _module(gm, node)
    return node.args[0] if type(mod).__name__ == f"Onnx{kind}" and len(node.args) == 1 else None


def _constant(gm: Any, node: Any) -> Any:
    """The tensor behind a ``get_attr`` node, else None."""
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part, None)
    return obj


def _scalar(gm: Any, node: Any, value: float) -> bool:
    t = _constant(gm, node)
    return t is not None and t.numel() == 1 and math.isclose(float(t.reshape(())), value, rel_tol=1e-6)


def _other(pair: tuple[Any, Any], gm: Any, value: float) -> Any:
    """In a commutative pair, the operand next to the scalar constant ``value``, else None."""
    a, b = pair
    return b if _scalar(gm, a, value) else a if _scalar(gm, b, value) else None


def _gelu_input(gm: Any, node: Any) -> Any:
    """``x`` when ``node`` is ``(0.5 * x) * (1 - erf(-x * 1/sqrt(2)))`` (either operand order), else None."""
    outer = _binary(gm, node, "mul")
    if outer is None:
        return None
    for half, erfc in (outer, outer[::-1]):
        half_pair, sub = _binary(gm, half, "mul"), _binary(gm, erfc, "sub")
        x = _other(half_pair, gm, 0.5) if half_pair else None
        if x is None or sub is None or not _scalar(gm, sub[0], 1.0):
            continue
        scaled = _unary(gm, sub[1], "Erf")
        scaled_pair = _binary(gm, scaled, "mul") if scaled is not None else None
        neg = _other(scaled_pair, gm, _GELU_SCALE) if scaled_pair else None
        if neg is not None and _unary(gm, neg, "Neg") is x:
            return x
    return None


def fuse_gelu(gm: Any) -> int:
    """Replace each spelled-out exact GELU with ``F.gelu``; returns how many."""
    import torch.nn.functional as F

    fused = 0
    for node in list(gm.graph.nodes):
        x = _gelu_input(gm, node)
        if x is None:
            continue
        with gm.graph.inserting_before(node):
            gelu = gm.graph.call_function(F.gelu, (x,))
        node.replace_all_uses_with(gelu)
        fused += 1
    _drop_dead(gm)
    return fused


def fuse_silu(gm: Any) -> int:
    """Replace ``x * sigmoid(x)`` (Keras' swish / silu, either operand order) with ``F.silu``; returns how many."""
    import torch.nn.functional as F
    from torch import nn

    fused = 0
    for node in list(gm.graph.nodes):
        pair = _binary(gm, node, "mul")
        if pair is None:
            continue
        for x, sig in (pair, pair[::-1]):
            if isinstance(_module(gm, sig), nn.Sigmoid) and sig.args[:1] == (x,) and len(sig.args) == 1:
                with gm.graph.inserting_before(node):
                    silu = gm.graph.call_function(F.silu, (x,))
                node.replace_all_uses_with(silu)
                fused += 1
                break
    _drop_dead(gm)
    return fused


def fuse_matmul_bias(gm: Any) -> int:
    """``MatMul(x, W) + b`` with constant 2-D ``W`` and 1-D ``b`` as one ``F.linear(x, W.t(), b)`` (MatMul by a
    matrix is a linear map of the last axis at every rank), also when a static reshape keeping the last dim sits
    between the MatMul and the Add (tf2onnx's Dense on rank 4); returns how many."""
    import torch
    import torch.nn.functional as F

    from converter.to_torch import modules as M

    fused = 0
    for node in list(gm.graph.nodes):
        pair = _binary(gm, node, "add")
        if pair is None:
            continue
        for mm, bias in (pair, pair[::-1]):
            b_t = _constant(gm, bias)
            back = None
            if getattr(mm, "target", None) is M.reshape_static and len(mm.users) == 1 and b_t is not None:
                back, mm = mm, mm.args[0]
            if type(_module(gm, mm)).__name__ != "OnnxMatMul" or len(mm.users) != 1:
                continue
            x, w = mm.args
            w_t = _constant(gm, w)
            if w_t is None or b_t is None or w_t.dim() != 2 or b_t.dim() != 1 \
                    or b_t.shape[0] != w_t.shape[1] or b_t.dtype != w_t.dtype:
                continue
            if back is not None and (not isinstance(back.args[1][-1], int) or back.args[1][-1] != w_t.shape[1]):
                continue
            with gm.graph.inserting_before(node):
                fusedmm = gm.graph.call_function(F.linear, (x, gm.graph.call_function(torch.t, (w,)), bias))
                out = fusedmm if back is None else gm.graph.call_function(M.reshape_static, (fusedmm, back.args[1]))
            fusedmm.meta["onnx_name"] = str(mm.target)  # the Dense's name, for --emit-source's nn.Linear
            node.replace_all_uses_with(out)
            fused += 1
            break
    _drop_dead(gm)
    return fused


def _reduce_mean(gm: Any, node: Any) -> Any:
    """(input, axes) of an onnx2torch keepdims ReduceMean node, else None."""
    mod = _module(gm, node)
    if type(mod).__name__ != "OnnxReduceStaticAxes" or mod.operation_type != "ReduceMean" or not mod.keepdims:
        return None
    return node.args[0], list(mod.axes or ())


def _layer_norm_parts(gm: Any, node: Any) -> tuple[Any, Any, Any, Any, float] | None:
    """(x, mean node, gamma node, beta node or None, eps) when ``node`` is TF's spelled-out LayerNormalization
    ``x * m + (-mean * m [+ beta])``, ``m = gamma / sqrt(mean((x - mean)^2) + eps)``, over ONNX axis 1."""
    add = _binary(gm, node, "add")
    if add is None:
        return None
    for xm, rest in (add, add[::-1]):
        xm_pair = _binary(gm, xm, "mul")
        inner = _binary(gm, rest, "add")
        beta, shift = None, rest
        if inner is not None:
            for a, b in (inner, inner[::-1]):
                if _constant(gm, b) is not None:
                    shift, beta = a, b
        shift_pair = _binary(gm, shift, "mul")
        if xm_pair is None or shift_pair is None:
            continue
        for x, m in (xm_pair, xm_pair[::-1]):
            neg = shift_pair[0] if shift_pair[1] is m else shift_pair[1] if shift_pair[0] is m else None
            mean = _unary(gm, neg, "Neg") if neg is not None else None
            parts = _scale_parts(gm, m, x, mean)
            if parts is not None:
                return x, mean, parts[0], beta, parts[1]
    return None


def _scale_parts(gm: Any, m: Any, x: Any, mean: Any) -> tuple[Any, float] | None:
    """(gamma node, eps) when ``m`` is ``gamma * 1/sqrt(var + eps)`` and ``var``/``mean`` are x's over axis 1."""
    if mean is None or _reduce_mean(gm, mean) != (x, [1]):
        return None
    pair = _binary(gm, m, "mul")
    for rec, gamma in (pair or ()), (pair or ())[::-1]:
        root = _unary(gm, rec, "Reciprocal")
        plus = _binary(gm, _unary(gm, root, "Sqrt"), "add") if root is not None else None
        if plus is None or _constant(gm, gamma) is None:
            continue
        for var, eps in (plus, plus[::-1]):
            e = _constant(gm, eps)
            reduced = _reduce_mean(gm, var)
            sq = _binary(gm, reduced[0], "mul") if reduced and reduced[1] == [1] else None
            diff = _binary(gm, sq[0], "sub") if sq and sq[0] is sq[1] else None
            if e is not None and e.numel() == 1 and diff == (x, mean):
                return gamma, float(e.reshape(()))
    return None


def fuse_layer_norm(gm: Any) -> int:
    """Replace TF's spelled-out LayerNormalization over the channel axis of a channels-first activation (tf2onnx
    moved it there) by ``permute -> F.layer_norm -> permute``: the permutes are views, and the one back usually
    cancels against the NHWC transpose of the Dense that follows (``optimize.cancel_permute_pairs``). Only where
    gamma (and beta) have shape (1, C, 1, ...), which says the tensor's rank and that axis 1 is the channel axis
    (rank 2, a pooled head's LayerNorm: no permutes)."""
    import torch
    import torch.nn.functional as F

    fused = 0
    for node in list(gm.graph.nodes):
        parts = _layer_norm_parts(gm, node)
        if parts is None:
            continue
        x, _, gamma, beta, eps = parts
        g_t, b_t = _constant(gm, gamma), _constant(gm, beta) if beta is not None else None
        rank, channels = g_t.dim(), g_t.shape[1] if g_t.dim() > 1 else 0
        lead = (1, channels, *([1] * (rank - 2)))
        if rank < 2 or tuple(g_t.shape) != lead or (b_t is not None and tuple(b_t.shape) != lead):
            continue
        last = (0, *range(2, rank), 1)
        back = (0, rank - 1, *range(1, rank - 1))
        graph = gm.graph
        with graph.inserting_before(node):  # rank 2: axis 1 is already the last one
            nhwc = graph.call_function(torch.permute, (x, last)) if rank > 2 else x
            weight = graph.call_function(torch.reshape, (gamma, (channels,)))
            bias = graph.call_function(torch.reshape, (beta, (channels,))) if beta is not None else None
            normed = graph.call_function(F.layer_norm, (nhwc, (channels,), weight, bias, eps))
            out = graph.call_function(torch.permute, (normed, back)) if rank > 2 else normed
        node.replace_all_uses_with(out)
        fused += 1
    _drop_dead(gm)
    return fused


def _drop_dead(gm: Any) -> None:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
