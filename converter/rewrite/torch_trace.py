"""--to keras --input-shape: run the original torch model once and record, per call site, what its axes mean.

Which axis ``x.size()``, ``x.squeeze(-1)`` or ``x.view(b, c, 1, 1)`` means in channels_last output depends on the
rank of ``x`` and on whether the Keras code holds it channels-last (``rules.traced``), which the source does not
say. One forward pass under a ``TorchFunctionMode`` sees every tensor method and ``torch.*`` call; the calling
frame's instruction position (Python 3.11 ``co_positions``) names the call in the user's file. Each tensor's Keras
form is followed through the pass: image inputs and conv/pool/norm results are *moved*; a reshaped or permuted
result is moved when a conv/pool/norm reads it, keeps its input's form when only other traced calls read it, and
otherwise is moved exactly when its rank is an image input's (as ``--verify`` compares outputs). A site seen with
different ranks or forms is dropped. Runs user code: callers reach this only through --input-shape (an explicit
opt-in), as with --verify.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from rules.traced import TracedCall

#: The calls whose axes depend on the layout: the rules ask for these.
TRACED = frozenset({"view", "reshape", "flatten", "squeeze", "unsqueeze", "size", "permute", "transpose", "mean",
                    "sum", "amax", "amin"})
#: torch functions whose rank >= 3 result the Keras rewrite computes channels-last (its conv/pool/norm layers).
LAYOUT_OPS = frozenset({
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d", "adaptive_max_pool2d",
    "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices", "adaptive_max_pool2d_with_indices",
    "batch_norm", "group_norm", "instance_norm",
})
#: torch's files whose Python functions (``F.*``, ``torch.*`` wrappers, ``Tensor`` methods) hand a user's call to
#: ``__torch_function__``: skipped when naming the call site. Any other torch file (a module's forward) is not
#: the user's call.
_DISPATCH = ("overrides.py", "functional.py", "nn/functional.py", "_tensor.py")


@dataclass
class _Site:
    before: tuple[int, ...]
    before_form: object
    after: tuple[int, ...] | None
    #: who read the (rank >= 3) result: "layout" (conv/pool/norm), "traced" (another traced call), "other".
    readers: set[str] = field(default_factory=set)


def fact_key(line: int, col: int, end_line: int, end_col: int) -> str:
    """A call's source range (1-based lines, 0-based columns, end exclusive): chained calls share their start."""
    return f"@{line}:{col}-{end_line}:{end_col}"


def call_key(path: str, code: str, n: int) -> str:
    """The structural key of the ``n``-th call with source ``code`` in ``Class.method`` ``path`` (the engine's)."""
    return f"{path}|{code}|{n}"


class _Recorder:
    """The bookkeeping of one traced pass: tensor forms, sites, and their readers."""

    def __init__(self, path: str, torch_dir: str) -> None:
        self.path = path
        #: torch's own files between a user's call and ``__torch_function__`` (Python-level functions dispatching).
        self.dispatch = {torch_dir + name for name in _DISPATCH}
        #: id(tensor) -> its Keras form: True moved, False plain, or the key of the site whose undecided output it is.
        self.forms: dict[int, object] = {}
        self._files: dict[str, str] = {}
        self.keep: list[Any] = []  # tensors whose id() is a key above stay alive, so ids are not reused
        self.sites: dict[str, _Site] = {}
        self.dropped: set[str] = set()

    def site(self) -> str | None:
        """The calling line in the user's file, when the call is made there (not inside a torch module's forward)."""
        frame = sys._getframe(2)  # the caller of ``__torch_function__``
        while frame is not None and self._file(frame.f_code.co_filename) in self.dispatch:
            frame = frame.f_back  # type: ignore[assignment]
        if frame is None or self._file(frame.f_code.co_filename) != self.path or frame.f_lasti < 0:
            return None
        positions = list(frame.f_code.co_positions())
        index = frame.f_lasti // 2
        if index >= len(positions):
            return None
        line, end_line, col, end_col = positions[index]
        if None in (line, end_line, col, end_col):
            return None
        return fact_key(line, col, end_line, end_col)  # type: ignore[arg-type]

    def _file(self, name: str) -> str:
        if name not in self._files:
            self._files[name] = str(Path(name).resolve())
        return self._files[name]

    def form(self, tensor: Any) -> object:
        found = self.forms.get(id(tensor))
        return found if found is not None else tensor.dim() in (4, 5)

    def set_form(self, tensor: Any, form: object) -> None:
        self.forms[id(tensor)] = form
        self.keep.append(tensor)

    def record(self, name: str, args: Sequence[Any], result: Any, key: str | None) -> None:
        import torch

        tensors = [a for a in args if isinstance(a, torch.Tensor)] + [
            t for a in args if isinstance(a, (list, tuple)) for t in a if isinstance(t, torch.Tensor)]
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        same = isinstance(result, torch.Tensor) and first is not None and result.shape == first.shape
        kind = "layout" if name in LAYOUT_OPS else "traced" if key is not None else "other"
        for t in tensors:
            form = self.forms.get(id(t))
            if isinstance(form, str) and not (same and t is first and kind == "other"):
                self.sites[form].readers.add(kind)
        if key is not None and first is not None:
            self._site(key, first, result)
        elif isinstance(result, torch.Tensor):
            if name in LAYOUT_OPS and result.dim() >= 3:
                self.set_form(result, True)
            elif same:
                self.set_form(result, self.form(first))
        elif name in LAYOUT_OPS and isinstance(result, tuple):
            for r in result:
                if isinstance(r, torch.Tensor) and r.dim() >= 3:
                    self.set_form(r, True)

    def _site(self, key: str, first: Any, result: Any) -> None:
        import torch

        after: tuple[int, ...] | None = None
        if isinstance(result, torch.Size):
            after = tuple(int(d) for d in result)
        elif isinstance(result, torch.Tensor):
            after = tuple(int(d) for d in result.shape)
        fact = _Site(tuple(int(d) for d in first.shape), self.form(first), after)
        if key in self.dropped:
            return
        seen = self.sites.get(key)
        if seen is None:
            self.sites[key] = fact
        elif (len(seen.before), seen.before_form, None if seen.after is None else len(seen.after)) != (
                len(fact.before), fact.before_form, None if after is None else len(after)):
            self.dropped.add(key)
            return
        if isinstance(result, torch.Tensor):
            self.set_form(result, key if result.dim() >= 3 else False)

    def returned(self, value: Any) -> None:
        """The model's outputs are read by the comparison: an undecided form follows the image-rank rule."""
        if isinstance(value, (list, tuple)):
            for v in value:
                self.returned(v)
        elif isinstance(value, dict):
            for v in value.values():
                self.returned(v)
        else:
            form = self.forms.get(id(value))
            if isinstance(form, str):
                self.sites[form].readers.add("other")

    def facts(self, image_ranks: set[int]) -> dict[str, TracedCall]:
        decided: dict[str, bool] = {}

        def resolve(form: object) -> bool:
            if not isinstance(form, str):
                return bool(form)
            if form not in decided:
                site = self.sites[form]
                rank = len(site.after or ())
                if rank < 3:
                    decided[form] = False
                elif "layout" in site.readers:
                    decided[form] = True
                elif site.readers == {"traced"}:
                    decided[form] = resolve(site.before_form) and len(site.before) >= 3
                else:
                    decided[form] = rank in image_ranks
            return decided[form]

        return {key: TracedCall(s.before, resolve(s.before_form) and len(s.before) >= 3, s.after, resolve(key))
                for key, s in self.sites.items() if key not in self.dropped}


def trace_shapes(source: Path, class_name: str, input_shapes: tuple[tuple[int, ...], ...],
                 kwargs: dict[str, Any], seed: int = 0) -> tuple[tuple[str, TracedCall], ...]:
    """(structural key, TracedCall) for each traced call in ``source`` during one forward pass on random inputs.

    Inputs are as ``--verify`` feeds them: integer tokens when the model has an ``nn.Embedding``, else floats, which
    the Keras side holds channels-last when their rank is >= 3."""
    import torch
    from torch.overrides import TorchFunctionMode

    from converter.rewrite.loading import build, import_file

    recorder = _Recorder(str(source.resolve()), str(Path(torch.__file__).resolve().parent) + "/")

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            result = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "").lstrip("_")
            key = recorder.site() if name in TRACED and args and isinstance(args[0], torch.Tensor) else None
            recorder.record(name, args, result, key)
            return result

    torch.manual_seed(seed)
    model = build(import_file(source), class_name, kwargs, str(source))
    model.eval()
    tokens = [m.num_embeddings for m in model.modules() if isinstance(m, torch.nn.Embedding)]
    inputs = [torch.randint(0, min(tokens), shape) if tokens else torch.randn(*shape) for shape in input_shapes]
    for tensor in inputs:
        recorder.set_form(tensor, tensor.is_floating_point() and tensor.dim() >= 3)
    try:
        with torch.no_grad(), Mode():
            recorder.returned(model(*inputs))
    except Exception:  # noqa: BLE001 - no shapes, no facts: the rewrite stays as it was (--verify reports errors)
        return ()
    image_ranks = {t.dim() for t in inputs if t.is_floating_point() and t.dim() >= 3}
    keys = structural_keys(source.read_text(encoding="utf-8"))
    facts = recorder.facts(image_ranks)
    return tuple(sorted((keys[k], v) for k, v in facts.items() if k in keys))


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
