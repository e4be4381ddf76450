"""ONNX -> PyTorch through onnx2torch (1.5.15): the only module that imports onnx2torch.

Gaps filled here (see shared/reference/upstream.md):
- onnx2torch has no LSTM/GRU converters and no opset-18 Reduce* (axes as an input): registered through its public
  ``add_converter`` registry, backed by plain-torch modules in ``converter.to_torch.modules``.
- onnx2torch is tested to opset 16 and looks converters up by the op's ``since_version``: ``torch.onnx.export``
  now writes opset 18-20, where Shape/Reshape/Cast/... have new versions that only widen the allowed dtypes
  (bfloat16, float8, int4). Those versions are registered as aliases of onnx2torch's own converter
  (``_DTYPE_ONLY``); the few whose semantics grew (Pad axes/wrap, AveragePool dilations, Resize antialias,
  ReduceMax/Min on bool) are aliased only when the node does not use the new feature.
- Shape arithmetic (Shape/Gather/Concat feeding Reshape) makes its Reshape/Slice modules call ``.numpy()`` /
  branch on tensor values, so ``torch.export`` fails: we constant-fold with onnxsim first and then bake the
  remaining constant shape arguments into plain functions (``_bake_constant_shapes``).
- Initializers become buffers, so the model has no trainable parameters (onnx2torch#194): ``converter.to_torch.
  trainable`` promotes the right ones.
- onnx2torch returns a multi-output node's whole tuple when one of its outputs is a graph output, and dedups
  graph outputs from one node: every graph output gets its own Identity first.
- onnx2torch raises on Reshape ``allowzero=1`` (the dynamo exporter's default): dropped where it is a no-op
  (``_drop_needless_allowzero``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Sequence

from converter.errors import UnsupportedError

# onnxsim passes that would merge a source weight with a constant or with another weight: the merged tensor
# matches no source weight, so it would stay a frozen copy (``converter.to_torch.trainable``). ``fuse_mul_into_conv``
# folded InceptionResNetV2's residual scales back into 39 conv kernels the tf2onnx repair had just restored.
_KEEP_WEIGHTS = ("fuse_bn_into_conv", "eliminate_nop_with_unit", "eliminate_duplicate_initializer", "fuse_qkv",
                 "fuse_mul_into_conv", "fuse_preceding_mul_into_conv", "fuse_matmul_into_conv",
                 "fuse_reduce_sum_into_conv")


@dataclass(frozen=True)
class TorchConversion:
    """The converted module plus what the adapter changed on the way."""

    module: Any  # torch.fx.GraphModule (its tensors are copies: the ONNX model is not kept alive with it)
    notes: tuple[str, ...]
    runtime_shapes: tuple[str, ...]  # onnx2torch modules left computing shapes from tensor values


def simplify(model: Any, fixed_shapes: dict[str, tuple[int, ...]] | None = None,
             force_fixed: bool = False) -> tuple[Any, list[str]]:
    """Constant-fold shape arithmetic with onnxsim, keeping symbolic dims (dynamic batch) unless ``force_fixed``.

    ``model`` is a ``ModelProto`` or the path of an ONNX file: a path goes to onnxsim's C++ core as a file (no
    parse in Python and serialization back for it: 5 s of VGG16's 11 s simplification).

    Optimizations that would merge or delete trainable weights are skipped (``_KEEP_WEIGHTS``): BatchNorm folded
    into Conv, a zero bias Add removed as a no-op, equal initializers (fresh BN gammas, zero biases) merged into one
    shared tensor, Q/K/V MatMuls fused into one, and a constant Mul, MatMul or ReduceSum merged into a conv's
    weights.
    """
    import onnxsim

    model = str(model) if isinstance(model, PurePath) else model
    notes: list[str] = []
    try:
        if force_fixed and fixed_shapes:
            raise RuntimeError("fixed shapes requested")
        simplified, _ = onnxsim.simplify(model, check_n=0, skipped_optimizers=list(_KEEP_WEIGHTS))
    except Exception as err:  # noqa: BLE001 - onnxsim raises plain RuntimeErrors from C++
        if not fixed_shapes:
            raise UnsupportedError(f"ONNX simplification failed: {str(err).splitlines()[0][:200]}") from err
        simplified, _ = onnxsim.simplify(model, check_n=0, skipped_optimizers=list(_KEEP_WEIGHTS),
                                         overwrite_input_shapes={k: list(v) for k, v in fixed_shapes.items()})
        if not force_fixed:
            notes.append("onnxsim needed fixed input shapes; the batch size is static")
    return simplified, notes


def _identity_outputs(model: Any) -> Any:
    """Give every graph output its own Identity node (see module docstring)."""
    import onnx

    graph = model.graph
    for k, out in enumerate(graph.output):
        inner = f"{out.name}__crossport_pre"
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == out.name:
                    node.output[i] = inner
            for i, name in enumerate(node.input):
                if name == out.name:
                    node.input[i] = inner
        graph.node.append(onnx.helper.make_node("Identity", [inner], [out.name], name=f"crossport_output_{k}"))
    return model


def convert(model: Any, examples: Sequence[Sequence[Any]] = ()) -> TorchConversion:
    """Convert a (simplified) ONNX model to a ``torch.fx.GraphModule`` that ``torch.export`` can trace.

    With ``examples`` (the same inputs at two batch sizes), batch-dependent shape arithmetic is made symbolic
    (``onnx2torch_shapes``) so the batch can stay dynamic.
    """
    import onnx2torch

    from converter.adapters.onnx2torch_shapes import SymbolicShapeError, make_batch_symbolic

    from converter.adapters.onnx2torch_converters import register_converters

    register_converters()
    model = _identity_outputs(model)
    _drop_needless_allowzero(model)
    from converter.adapters.onnx_lean import lean_onnx2torch_inference

    try:
        with lean_onnx2torch_inference():
            gm = onnx2torch.convert(model)
    except NotImplementedError as err:
        raise UnsupportedError(_unsupported_message(model, err)) from err
    notes: list[str] = []
    if len(examples) >= 2:
        try:
            if make_batch_symbolic(gm, examples):
                notes.append("batch-dependent shape arithmetic was made symbolic (x.size(0)) to keep the batch "
                             "dynamic")
        except SymbolicShapeError as err:
            return TorchConversion(gm, (f"cannot keep the batch symbolic: {err}",), ("symbolic shapes",))
    remaining = _bake_constant_shapes(gm)
    if remaining:
        notes.append(f"shape arguments computed at run time remain in {', '.join(remaining)}")
    return TorchConversion(gm, tuple(notes), remaining)


def _drop_needless_allowzero(model: Any) -> None:
    """onnx2torch refuses Reshape ``allowzero=1`` (NotImplementedError), which torch.onnx's dynamo exporter writes
    on every Reshape. It only changes what a 0 in the target shape means; with a constant shape holding no 0 the
    attribute is a no-op, so it is removed there (a shape with a 0, or computed at run time, still fails loudly)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        keep = [a for a in node.attribute if not (a.name == "allowzero" and a.i == 1)]
        if len(keep) != len(node.attribute) and 0 not in numpy_helper.to_array(inits[node.input[1]]).tolist():
            del node.attribute[:]
            node.attribute.extend(keep)


def _unsupported_message(model: Any, err: Exception) -> str:
    import re

    text = str(err)
    m = re.search(r"operation_type='(\w+)', version=(\d+)", text)
    if not m:
        return f"onnx2torch cannot convert the graph: {text.splitlines()[0][:200]}"
    op = m.group(1)
    version = next((str(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), m.group(2))
    node = next((n for n in model.graph.node if n.op_type == op), None)
    where = f" (first at node {node.name!r})" if node is not None and node.name else ""
    return f"onnx2torch has no converter for ONNX op {op} at opset {version}{where}"


# ---- baking constant shape arguments --------------------------------------------------------------------


def _const(gm: Any, node: Any) -> Any:
    """The tensor value of a get_attr node, or None when ``node`` is not a constant."""
    if node is None:
        return None
    if getattr(node, "op", None) != "get_attr":
        return _NOT_CONST
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


_NOT_CONST = object()


def _ints(t: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in t.detach().cpu().reshape(-1).tolist())


def _bake_constant_shapes(gm: Any) -> tuple[str, ...]:
    """Replace onnx2torch's value-dependent shape modules whose shape inputs are constants by plain functions."""
    from converter.to_torch import modules as M

    graph = gm.graph
    changed = 0
    remaining: set[str] = set()
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        kind = type(mod).__name__
        args = list(node.args) + list(node.kwargs.values())
        consts = [_const(gm, a) for a in args[1:]]
        if kind not in _BAKERS:
            continue
        if any(c is _NOT_CONST for c in consts):
            remaining.add(kind)
            continue
        fn, fn_args = _BAKERS[kind](M, node, gm)
        with graph.inserting_before(node):
            new = graph.call_function(fn, (node.args[0] if node.args else None, *fn_args))
        node.replace_all_uses_with(new)
        graph.erase_node(node)
        changed += 1
    graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return tuple(sorted(remaining))


def _arg(gm: Any, node: Any, index: int, key: str) -> Any:
    if len(node.args) > index:
        value = node.args[index]
    else:
        value = node.kwargs.get(key)
    c = _const(gm, value)
    return None if c is None or c is _NOT_CONST else c


def _bake_reshape(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    return M.reshape_static, (_ints(_arg(gm, node, 1, "shape")),)


def _bake_slice(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    starts = _ints(_arg(gm, node, 1, "starts"))
    ends = _ints(_arg(gm, node, 2, "ends"))
    axes_t = _arg(gm, node, 3, "axes")
    steps_t = _arg(gm, node, 4, "steps")
    axes = _ints(axes_t) if axes_t is not None else tuple(range(len(starts)))
    steps = _ints(steps_t) if steps_t is not None else (1,) * len(starts)
    return M.slice_static, (starts, ends, axes, steps)


def _bake_expand(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    return M.expand_static, (_ints(_arg(gm, node, 1, "shape")),)


def _bake_tile(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    return M.tile_static, (_ints(_arg(gm, node, 1, "repeats")),)


def _bake_unsqueeze(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    return M.unsqueeze_static, (_ints(_arg(gm, node, 1, "axes")),)


def _bake_squeeze(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    return M.squeeze_static, (_ints(_arg(gm, node, 1, "axes")),)


def _bake_pad(M: Any, node: Any, gm: Any) -> tuple[Any, tuple]:
    """``OnnxPadDynamic`` calls ``pads.tolist()`` on every call, which torch.export turns into unbacked symbols
    (GuardOnDataDependentSymNode further down, e.g. at ResNet50's MaxPool): the pads are constants, baked here."""
    onnx_pads = _ints(_arg(gm, node, 1, "pads"))
    value_t = _arg(gm, node, 2, "constant_value")
    value = float(value_t.reshape(-1)[0]) if value_t is not None and value_t.numel() else 0.0
    half = len(onnx_pads) // 2
    pads: list[int] = []
    for axis in reversed(range(half)):  # ONNX: all begins then all ends, first axis first
        pads += [onnx_pads[axis], onnx_pads[axis + half]]
    while len(pads) > 2 and pads[-2:] == [0, 0]:
        del pads[-2:]
    return M.pad_static, (tuple(pads), gm.get_submodule(node.target).mode, value)


_BAKERS = {
    "OnnxPadDynamic": _bake_pad,
    "OnnxReshape": _bake_reshape,
    "OnnxSlice": _bake_slice,
    "OnnxExpand": _bake_expand,
    "OnnxTile": _bake_tile,
    "OnnxUnsqueezeDynamicAxes": _bake_unsqueeze,
    "OnnxSqueezeDynamicAxes": _bake_squeeze,
}
