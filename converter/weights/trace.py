"""Find which Linear layers consume a flattened (C, *spatial) tensor, by running the torch model once.

In channels_last mode Keras flattens (H, W, C) where torch flattened (C, H, W), so those Linear weights need a
row permutation. Static analysis cannot know the shapes; one traced forward pass (user opted in) can.
"""
from __future__ import annotations

from typing import Any, Sequence


def flatten_inputs(torch_module: Any, inputs: Sequence[Any]) -> dict[str, tuple[int, ...]]:
    """Map Linear path -> (C, *spatial) of the tensor that was flattened into it."""
    import math

    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    owners = {id(m.weight): name for name, m in torch_module.named_modules() if isinstance(m, torch.nn.Linear)}
    marks: dict[int, tuple[int, ...]] = {}
    keep: list[Any] = []
    found: dict[str, tuple[int, ...]] = {}

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            first = args[0] if args and isinstance(args[0], torch.Tensor) else None
            if func is F.linear and first is not None and len(args) > 1:
                mark = marks.get(id(first))
                owner = owners.get(id(args[1]))
                if mark is not None and owner is not None:
                    found[owner] = mark
            elif first is not None and isinstance(out, torch.Tensor):
                if first.dim() >= 3 and out.dim() == 2 and out.shape[0] == first.shape[0] and out.shape[1] == math.prod(
                    first.shape[1:]
                ):
                    marks[id(out)] = tuple(first.shape[1:])
                    keep.append(out)
                elif id(first) in marks and out.shape == first.shape:
                    marks[id(out)] = marks[id(first)]
                    keep.append(out)
            return out

    with torch.no_grad(), _Mode():
        torch_module(*inputs)
    return found
