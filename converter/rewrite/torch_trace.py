"""--to keras --input-shape: run the original torch model once and record the tensor shapes at its call sites.

Which axis ``x.size()``, ``x.squeeze(1)`` or ``x.view(b, c, 1, 1)`` means in channels_last output depends on the
rank of ``x``, which the source does not say. One forward pass under a ``TorchFunctionMode`` sees every tensor
method and ``torch.*`` call; the calling frame's instruction position (Python 3.11 ``co_positions``) names the
call in the user's file. Facts are keyed ``@line:col-end_line:end_col`` (the call expression's range, as libcst
reports it) -> (input shape, output shape); a site seen with different ranks is dropped. Runs user code: callers reach
this only through --input-shape (an explicit opt-in), as with --verify.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

#: The calls whose axes depend on the layout: the rules ask for these.
TRACED = frozenset({"view", "reshape", "flatten", "squeeze", "unsqueeze", "size", "permute", "transpose", "mean",
                    "sum", "amax", "amin", "softmax", "log_softmax", "expand", "expand_as"})


def _ranks(fact: object) -> tuple[int, ...]:
    return tuple(len(x) if isinstance(x, tuple) else -1 for x in fact)  # type: ignore[union-attr]


def fact_key(line: int, col: int, end_line: int, end_col: int) -> str:
    """A call's source range (1-based lines, 0-based columns, end exclusive): chained calls share their start."""
    return f"@{line}:{col}-{end_line}:{end_col}"


def trace_shapes(source: Path, class_name: str, input_shapes: tuple[tuple[int, ...], ...],
                 kwargs: dict[str, Any], seed: int = 0) -> tuple[tuple[str, object], ...]:
    """(key, (in_shape, out_shape)) for each traced call in ``source`` during one forward pass on random inputs."""
    import torch
    from torch.overrides import TorchFunctionMode

    from converter.rewrite.loading import build, import_file

    path = str(source.resolve())
    seen: dict[str, object] = {}
    dropped: set[str] = set()

    def site() -> str | None:
        frame = sys._getframe(2)
        while frame is not None and str(Path(frame.f_code.co_filename).resolve()) != path:
            frame = frame.f_back  # type: ignore[assignment]
        if frame is None or frame.f_lasti < 0:
            return None
        positions = list(frame.f_code.co_positions())
        index = frame.f_lasti // 2
        if index >= len(positions):
            return None
        line, end_line, col, end_col = positions[index]
        if None in (line, end_line, col, end_col):
            return None
        return fact_key(line, col, end_line, end_col)  # type: ignore[arg-type]

    def shape_of(value: object) -> object:
        if isinstance(value, torch.Tensor):
            return tuple(int(d) for d in value.shape)
        if isinstance(value, torch.Size):
            return tuple(int(d) for d in value)
        return None

    class Recorder(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            result = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "")
            if name in TRACED and args and isinstance(args[0], torch.Tensor):
                key = site()
                if key is not None and key not in dropped:
                    fact = (shape_of(args[0]), shape_of(result))
                    if _ranks(seen.setdefault(key, fact)) != _ranks(fact):
                        dropped.add(key)
                        seen.pop(key, None)
            return result

    torch.manual_seed(seed)
    model = build(import_file(source), class_name, kwargs, str(source))
    model.eval()
    tokens = [m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    inputs = [torch.randint(0, min(tokens), shape) if tokens else torch.randn(*shape) for shape in input_shapes]
    try:
        with torch.no_grad(), Recorder():
            model(*inputs)
    except Exception:  # noqa: BLE001 - no shapes, no facts: the rewrite stays as it was (--verify reports errors)
        return ()
    keys = structural_keys(source.read_text(encoding="utf-8"))
    return tuple(sorted((keys[k], v) for k, v in seen.items() if k in keys))


def structural_keys(source: str) -> dict[str, str]:
    """Source range key -> ``Class.method|<call code>|<n-th such call there>``: the key the rewrite engine computes
    for the same call without positions (its pre-passes may move lines)."""
    import libcst as cst
    from libcst.metadata import MetadataWrapper, PositionProvider

    wrapper = MetadataWrapper(cst.parse_module(source), unsafe_skip_copy=True)
    positions = wrapper.resolve(PositionProvider)
    module = wrapper.module
    found: dict[str, str] = {}
    counts: dict[tuple[str, str], int] = {}

    class Calls(cst.CSTVisitor):
        def __init__(self) -> None:
            self.defs: list[str] = []

        def visit_ClassDef(self, node: cst.ClassDef) -> None:
            self.defs.append(node.name.value)

        def leave_ClassDef(self, original_node: cst.ClassDef) -> None:
            self.defs.pop()

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            self.defs.append(node.name.value)

        def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
            self.defs.pop()

        def visit_Call(self, node: cst.Call) -> None:
            where = positions[node]
            text = module.code_for_node(node)
            path = ".".join(self.defs)
            n = counts.get((path, text), 0)
            counts[(path, text)] = n + 1
            rng = fact_key(where.start.line, where.start.column, where.end.line, where.end.column)
            found[rng] = call_key(path, text, n)

    module.visit(Calls())
    return found


def call_key(path: str, code: str, n: int) -> str:
    return f"{path}|{code}|{n}"
