"""Keep a dynamic batch through onnx2torch: turn ONNX shape arithmetic into symbolic Python shapes.

Exporters compute batch-dependent shapes in the graph (``Shape -> Gather/Slice -> Concat -> Reshape/Expand``);
onnx2torch turns each step into a module on int64 tensors, and ``torch.export`` cannot trace tensor values into
sizes (data-dependent guards). This pass, part of the onnx2torch adapter (it knows onnx2torch 1.5.15's module
classes by name, and imports nothing from it), evaluates that arithmetic on lists of Python ints and
``x.size(i)`` nodes instead, so Reshape/Expand/ConstantOfShape/Tile receive symbolic sizes that torch.export keeps
dynamic. Which dimensions are dynamic is measured, not guessed: the graph runs on two batch sizes and dimensions
that differ become ``x.size(i)``. Anything it does not understand raises ``SymbolicShapeError`` and the caller
falls back to folding at fixed shapes.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Sequence


class SymbolicShapeError(Exception):
    """The shape arithmetic uses an op this pass does not model."""


@dataclass(frozen=True)
class _Shape:
    items: tuple[Any, ...]  # int or torch.fx.Node (a SymInt at trace time)
    scalar: bool = False

    @property
    def static(self) -> bool:
        return all(isinstance(i, int) for i in self.items)


_MAX_CONST = 16
_BINARY = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "_onnx_div": operator.floordiv}


def make_batch_symbolic(gm: Any, examples: Sequence[Sequence[Any]]) -> int:
    """Rewrite shape consumers fed by shape arithmetic; returns how many were rewritten."""
    from converter.to_torch import modules as M

    shapes = [_propagate(gm, ex) for ex in examples]
    graph = gm.graph
    vals: dict[Any, _Shape] = {}
    rewritten = 0
    for node in list(graph.nodes):
        if node.op == "get_attr":
            t = _attr(gm, node.target)
            if hasattr(t, "dtype") and not t.is_floating_point() and t.dim() <= 1 and t.numel() <= _MAX_CONST:
                vals[node] = _Shape(tuple(int(v) for v in t.reshape(-1).tolist()), scalar=t.dim() == 0)
            continue
        if node.op != "call_module":
            _check_unhandled(node, vals)
            continue
        mod = gm.get_submodule(node.target)
        kind = type(mod).__name__
        args = list(node.args)
        if kind == "OnnxShape":
            vals[node] = _shape_of(graph, node, args[0], shapes, getattr(mod, "_start", 0), getattr(mod, "_end", None))
        elif kind == "OnnxCast" and args and args[0] in vals:
            vals[node] = vals[args[0]]
        elif kind == "OnnxSlice" and args and args[0] in vals:
            vals[node] = _slice(vals, node)
        elif kind == "OnnxGather" and len(args) == 2 and args[0] in vals:
            vals[node] = _gather(vals, args[0], args[1], getattr(mod, "_axis", 0))
        elif kind == "OnnxConcat" and args and all(a in vals for a in args):
            vals[node] = _Shape(tuple(i for a in args for i in vals[a].items))
        elif kind == "OnnxUnsqueezeStaticAxes" and args and args[0] in vals:
            vals[node] = _Shape(vals[args[0]].items)
        elif kind == "OnnxSqueezeStaticAxes" and args and args[0] in vals and len(vals[args[0]].items) == 1:
            vals[node] = _Shape(vals[args[0]].items, scalar=True)
        elif kind == "OnnxBinaryMathOperation" and len(args) == 2 and all(a in vals for a in args):
            vals[node] = _binary(graph, node, mod, vals[args[0]], vals[args[1]])
        elif kind == "OnnxMinMax" and args and all(a in vals for a in args):
            vals[node] = _min_max(graph, node, mod, [vals[a] for a in args])
        elif kind == "OnnxReduceStaticAxes" and len(args) == 1 and args[0] in vals:
            vals[node] = _reduce(graph, node, mod, vals[args[0]])
        elif kind == "OnnxReshape" and len(args) == 2 and args[1] in vals:
            _replace(graph, node, M.reshape_static, (args[0], list(vals[args[1]].items)))
            rewritten += 1
        elif kind == "OnnxExpand" and len(args) == 2 and args[1] in vals:
            _replace(graph, node, M.expand_static, (args[0], list(vals[args[1]].items)))
            rewritten += 1
        elif kind == "OnnxTile" and len(args) == 2 and args[1] in vals:
            _replace(graph, node, M.tile_static, (args[0], list(vals[args[1]].items)))
            rewritten += 1
        elif kind == "OnnxConstantOfShape" and len(args) == 1 and args[0] in vals:
            value = getattr(mod, "value")
            _replace(graph, node, M.constant_of_shape, (list(vals[args[0]].items), value.item(), value.dtype))
            rewritten += 1
        else:
            _check_unhandled(node, vals)
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return rewritten


def _propagate(gm: Any, example: Sequence[Any]) -> dict[str, tuple[int, ...]]:
    import torch
    from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

    gm.eval()  # a BatchNorm in train mode would update its running statistics here
    with torch.no_grad():
        ShapeProp(gm).propagate(*example)
    out = {}
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        if isinstance(meta, TensorMetadata):
            out[node.name] = tuple(int(d) for d in meta.shape)
    return out


def _attr(gm: Any, target: str) -> Any:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _shape_of(graph: Any, node: Any, x: Any, shapes: list[dict[str, tuple[int, ...]]], start: int,
              end: int | None) -> _Shape:
    known = [s.get(getattr(x, "name", ""), None) for s in shapes]
    if any(k is None for k in known):
        raise SymbolicShapeError(f"no recorded shape for the input of {node.name}")
    items: list[Any] = []
    for axis, dims in enumerate(zip(*known)):
        if len(set(dims)) == 1:
            items.append(int(dims[0]))
        else:
            with graph.inserting_before(node):
                items.append(graph.call_method("size", (x, axis)))
    return _Shape(tuple(items[start:end]))


def _const_ints(vals: dict[Any, _Shape], node: Any) -> tuple[int, ...] | None:
    if node is None:
        return None
    value = vals.get(node)
    if value is None or not value.static:
        raise SymbolicShapeError(f"{getattr(node, 'name', node)} is not a constant")
    return tuple(value.items)


def _slice(vals: dict[Any, _Shape], node: Any) -> _Shape:
    args = list(node.args) + [node.kwargs.get(k) for k in ("axes", "steps") if k in node.kwargs]
    data = vals[args[0]].items
    starts, ends = _const_ints(vals, args[1]), _const_ints(vals, args[2])
    axes = _const_ints(vals, args[3]) if len(args) > 3 and args[3] is not None else (0,)
    steps = _const_ints(vals, args[4]) if len(args) > 4 and args[4] is not None else (1,)
    if axes not in ((0,), (-1,)) or len(starts) != 1:
        raise SymbolicShapeError("Slice of a shape along more than one axis")
    big = 1 << 62
    return _Shape(tuple(data[slice(max(min(starts[0], big), -big), max(min(ends[0], big), -big), steps[0])]))


def _gather(vals: dict[Any, _Shape], data_node: Any, index_node: Any, axis: int) -> _Shape:
    if axis != 0 or index_node not in vals or not vals[index_node].static:
        raise SymbolicShapeError("Gather on a shape with a non-constant index")
    data, index = vals[data_node].items, vals[index_node]
    picked = tuple(data[int(i)] for i in index.items)
    return _Shape(picked, scalar=index.scalar)


def _binary(graph: Any, node: Any, mod: Any, a: _Shape, b: _Shape) -> _Shape:
    fn = _BINARY.get(getattr(getattr(mod, "math_op_function", None), "__name__", ""))
    if fn is None:
        raise SymbolicShapeError(f"shape arithmetic with {type(mod).__name__}")
    return _elementwise(graph, node, a, b, fn, fn)


def _elementwise(graph: Any, node: Any, a: _Shape, b: _Shape, on_ints: Any, on_syms: Any) -> _Shape:
    n = max(len(a.items), len(b.items))
    left = a.items * n if len(a.items) == 1 else a.items
    right = b.items * n if len(b.items) == 1 else b.items
    if len(left) != len(right):
        raise SymbolicShapeError("shape arithmetic on mismatched lengths")
    items = []
    for x, y in zip(left, right):
        if isinstance(x, int) and isinstance(y, int):
            items.append(int(on_ints(x, y)))
        else:
            with graph.inserting_before(node):
                items.append(graph.call_function(on_syms, (x, y)))
    return _Shape(tuple(items), scalar=a.scalar and b.scalar)


def _min_max(graph: Any, node: Any, mod: Any, values: list[_Shape]) -> _Shape:
    import torch

    name = getattr(getattr(mod, "_operator", None), "__name__", "")
    if name not in ("amax", "amin"):
        raise SymbolicShapeError(f"shape arithmetic with {type(mod).__name__}")
    on_ints, on_syms = (max, torch.sym_max) if name == "amax" else (min, torch.sym_min)
    out = values[0]
    for v in values[1:]:
        out = _elementwise(graph, node, out, v, on_ints, on_syms)
    return out


def _reduce(graph: Any, node: Any, mod: Any, value: _Shape) -> _Shape:
    import torch

    op = getattr(mod, "operation_type", "")
    fns = {"ReduceProd": (operator.mul, operator.mul), "ReduceSum": (operator.add, operator.add),
           "ReduceMax": (max, torch.sym_max), "ReduceMin": (min, torch.sym_min)}
    if op not in fns or getattr(mod, "axes", None) not in (None, [], [0], [-1]) or value.scalar:
        raise SymbolicShapeError(f"{op or type(mod).__name__} over a shape")
    if not value.items:
        raise SymbolicShapeError(f"{op} over an empty shape")
    on_ints, on_syms = fns[op]
    acc = _Shape((value.items[0],), scalar=True)
    for item in value.items[1:]:
        acc = _elementwise(graph, node, acc, _Shape((item,), scalar=True), on_ints, on_syms)
    return _Shape(acc.items, scalar=not getattr(mod, "keepdims", True))


def _replace(graph: Any, node: Any, fn: Any, args: tuple) -> None:
    with graph.inserting_before(node):
        new = graph.call_function(fn, args)
    node.replace_all_uses_with(new)
    graph.erase_node(node)


def _check_unhandled(node: Any, vals: dict[Any, _Shape]) -> None:
    """A dynamic shape value flowing into something we do not model: give up (the caller folds statically)."""
    for arg in list(node.args) + list(node.kwargs.values()):
        if isinstance(arg, (list, tuple)):
            continue
        value = vals.get(arg)
        if value is not None and not value.static and node.op != "output":
            raise SymbolicShapeError(f"a batch-dependent shape reaches {node.op} {node.target}")
