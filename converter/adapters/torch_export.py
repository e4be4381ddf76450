"""Adapter around ``torch.export`` for ExportedPrograms saved *without* a dynamic batch.

``torch.export.export(model, (x,))`` without ``dynamic_shapes`` bakes the example's batch into every shape
argument (``class_token.expand(2, -1, -1)``, ``view(2, 197, 12, 64)``). Converted as it is, the target gets a fixed
batch, and the ONNX exporter's constant folding turns parameters whose only use is batch-shaped (ViT's class token
expanded to the batch) into constants, so the converted model trains fewer parameters. Re-exporting
``ep.module()`` with a dynamic batch fails on those literals ("Constraints violated (batch)... specialized it to be
a constant"), so we drop ``ep.module()``'s input-shape guards, replace the leading size of each shape argument that equals the baked batch by
``x.size(0)``, re-export with ``Dim("batch")``, and keep the result only when it reproduces the original program on
two overlapping windows of a larger batch (a leading size that was not the batch changes the numbers or fails).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# aten ops whose shape argument (position) may carry the baked batch as its first entry
_SHAPE_ARGS = {
    "aten.view.default": 1, "aten.reshape.default": 1, "aten._unsafe_view.default": 1, "aten.expand.default": 1,
    "aten.new_zeros.default": 1, "aten.new_ones.default": 1, "aten.new_full.default": 1,
    "aten.new_empty.default": 1, "aten.zeros.default": 0, "aten.ones.default": 0, "aten.full.default": 0,
    "aten.empty.memory_format": 0,
}


@dataclass(frozen=True)
class Redone:
    """The outcome: a dynamic-batch program, or None with the reason it stays static."""

    program: Any
    replaced: int  # shape arguments whose leading size became x.size(0)
    reason: str = ""


def with_dynamic_batch(program: Any, shapes: tuple[tuple[int, ...], ...],
                       dtypes: tuple[str, ...]) -> Redone:
    """Re-export ``program`` (static batch ``shapes[0][0]``) with a dynamic batch, checked against the original."""
    import torch

    if not shapes or not shapes[0]:
        return Redone(None, 0, "the program has no batched input")
    batch = shapes[0][0]
    if any(not s or s[0] != batch for s in shapes):
        return Redone(None, 0, "its inputs do not share one leading (batch) size")
    gm = program.module()
    _drop_input_guards(gm)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(shapes):
        return Redone(None, 0, "its inputs could not be matched to the graph")
    first = placeholders[-1]
    with gm.graph.inserting_after(first):
        size = gm.graph.call_function(torch.ops.aten.sym_size.int, (placeholders[0], 0))
    replaced = 0
    for node in list(gm.graph.nodes):
        pos = _SHAPE_ARGS.get(str(node.target)) if node.op == "call_function" else None
        if pos is None or len(node.args) <= pos:
            continue
        arg = node.args[pos]
        if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], int) and arg[0] == batch:
            node.args = (*node.args[:pos], [size, *arg[1:]], *node.args[pos + 1:])
            replaced += 1
    if not size.users:
        gm.graph.erase_node(size)
    gm.recompile()
    # torch.export specializes a dimension whose example size is 1: trace at batch 2 at least
    example = tuple(_sample(s, d, max(batch, 2), k) for k, (s, d) in enumerate(zip(shapes, dtypes)))
    dim = torch.export.Dim("batch", min=1, max=65536)
    try:
        redone = torch.export.export(gm, example, dynamic_shapes=tuple({0: dim} for _ in example), strict=False)
    except Exception as err:  # noqa: BLE001 - torch.export raises many kinds
        return Redone(None, replaced, f"torch.export could not make the batch dynamic ({_line(err)})")
    why = _differs(program, redone, shapes, dtypes, batch)
    if why:
        return Redone(None, replaced, why)
    return Redone(redone, replaced)


def _drop_input_guards(gm: Any) -> None:
    """``ep.module()`` re-checks the exported input shapes (a ``_guards_fn`` call and a forward pre-hook), which
    would pin the batch again; the re-export records its own guards."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and str(node.target) == "_guards_fn" and not node.users:
            gm.graph.erase_node(node)
    hooks = getattr(gm, "_forward_pre_hooks", {})
    for key in [k for k, fn in hooks.items() if getattr(fn, "__name__", "") == "_check_input_constraints_pre_hook"]:
        del hooks[key]


def _sample(shape: tuple[int, ...], dtype: str, batch: int, seed: int) -> Any:
    """A seeded input: normal floats, zeros for integers (index 0 is valid for any table), ones for bools."""
    import torch

    dt = getattr(torch, dtype)
    full = (batch, *shape[1:])
    if dt.is_floating_point:
        return torch.randn(full, generator=torch.Generator().manual_seed(seed)).to(dt)
    if dt == torch.bool:
        return torch.ones(full, dtype=dt)
    return torch.zeros(full, dtype=dt)


def _differs(program: Any, redone: Any, shapes: tuple[tuple[int, ...], ...], dtypes: tuple[str, ...],
             batch: int) -> str:
    """The re-exported program on batch B+1 against the original on rows [0, B) and [1, B+1)."""
    import torch

    feeds = tuple(_sample(s, d, batch + 1, 10 + k) for k, (s, d) in enumerate(zip(shapes, dtypes)))
    with torch.no_grad():
        try:
            new = _flat(redone.module()(*feeds))
            windows = [_flat(program.module()(*(f[lo:lo + batch] for f in feeds))) for lo in (0, 1)]
        except Exception as err:  # noqa: BLE001
            return f"the re-exported program does not run at batch {batch + 1} ({_line(err)})"
    for lo, old in zip((0, 1), windows):
        for a, b in zip(new, old):
            if not isinstance(a, torch.Tensor) or a.shape[1:] != b.shape[1:] or a.shape[0] != batch + 1:
                return "its outputs are not batched like its inputs"
            if not torch.allclose(a[lo:lo + batch].float(), b.float(), atol=1e-5, rtol=1e-4):
                return "with a dynamic batch it computes something else (a leading size was not the batch)"
    return ""


def _flat(out: Any) -> list[Any]:
    import torch

    return list(torch.utils._pytree.tree_leaves(out))


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:160] if text else ''}"
