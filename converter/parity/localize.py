"""Where two models start to disagree: intermediate tensors compared layer by layer, in the user's layer names.

Everything crossport converts goes through ONNX, and each side keeps the PyTorch module path:
PyTorch leaf modules (forward hooks; a ``.pt2`` is unflattened back into its modules), ONNX nodes (the dynamo
exporter records ``pkg.torch.onnx.name_scopes``; their outputs are read with onnxruntime as extra graph outputs),
and Keras layers (crossport's builder names them after the module path: ``layer1_0_conv1``, ``pool_max_pool2d``).
A *probe* is one call of one module; a module called twice (a shared ReLU) gives two probes. Probes are paired by
(module, call number) and compared in the reference's execution order; the first one beyond tolerance is the
first divergent layer.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from converter.layout import layout_for, to_layout
from converter.parity.compare import Tolerance, compare_arrays
from converter.parity.loaders import KERAS, ONNX, TORCH, LoadedModel

Probe = tuple[str, np.ndarray]  # (module path, output of one call)


@dataclass(frozen=True)
class LayerComparison:
    name: str  # module path, with "(call N)" for a module's second and later calls
    index: int  # position in the reference's execution order
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    atol_needed: float
    reference_scale: float
    passed: bool
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer errors along depth; ``first_divergent`` is None when every comparable layer is in tolerance."""

    layers: tuple[LayerComparison, ...]
    first_divergent: LayerComparison | None
    reference_layers: int
    candidate_layers: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"first_divergent": self.first_divergent.to_dict() if self.first_divergent else None,
                "reference_layers": self.reference_layers, "candidate_layers": self.candidate_layers,
                "compared": len(self.layers), "note": self.note, "layers": [l.to_dict() for l in self.layers]}


def supports(model: LoadedModel) -> bool:
    return model.kind in (TORCH, ONNX, KERAS) and model.handle is not None


def localize(reference: LoadedModel, candidate: LoadedModel, ref_feeds: Sequence[np.ndarray],
             cand_feeds: Sequence[np.ndarray], tol: Tolerance) -> LayerProfile:
    """Probe both models on one input set (each in its own input layout) and compare layer by layer."""
    missing = [m.kind + " (" + m.format + ")" for m in (reference, candidate) if not supports(m)]
    if missing:
        return LayerProfile((), None, 0, 0, f"per-layer outputs are not available for {', '.join(missing)}")
    modules = _module_set(reference) or _module_set(candidate)
    try:
        ref_probes = _probes(reference, ref_feeds, modules)
        cand_probes = _probes(candidate, cand_feeds, modules)
    except _NoProbes as err:
        return LayerProfile((), None, 0, 0, str(err))
    cand_by_key = dict(_keyed(cand_probes))
    cross = 1 if candidate.kind == KERAS else 0
    cross -= 1 if reference.kind == KERAS else 0
    rows: list[LayerComparison] = []
    for index, (key, ref_arr) in enumerate(_keyed(ref_probes)):
        cand_arr = cand_by_key.get(key)
        if cand_arr is None:
            continue
        rows.append(_compare(key, index, ref_arr, cand_arr, tol, cross))
    first = next((r for r in rows if not r.passed), None)
    note = "" if rows else "no layer names in common between the two models"
    return LayerProfile(tuple(rows), first, len(ref_probes), len(cand_probes), note)


class _NoProbes(Exception):
    pass


def _keyed(probes: Sequence[Probe]) -> list[tuple[str, np.ndarray]]:
    seen: dict[str, int] = {}
    out = []
    for name, arr in probes:
        n = seen.get(name, 0)
        seen[name] = n + 1
        out.append((name if n == 0 else f"{name} (call {n + 1})", arr))
    return out


def _compare(key: str, index: int, ref: np.ndarray, cand: np.ndarray, tol: Tolerance, cross: int) -> LayerComparison:
    aligned = _align(ref, cand, cross)
    if aligned is None:
        return LayerComparison(key, index, tuple(ref.shape), float("nan"), float("nan"), float("nan"), 0.0, True,
                               f"not compared: shapes {list(ref.shape)} vs {list(cand.shape)}")
    cmp = compare_arrays(key, aligned, ref, tol)
    note = ""
    passed = cmp.passed
    if not passed and ref.ndim >= 2 and _same_values(ref, aligned, tol):
        passed, note = True, "same values in another element order (layout); not counted"
    return LayerComparison(key, index, tuple(ref.shape), cmp.max_abs_error, cmp.max_rel_error, cmp.atol_needed,
                           cmp.reference_scale, passed, note)


def _align(ref: np.ndarray, cand: np.ndarray, cross: int) -> np.ndarray | None:
    """Bring a candidate intermediate into the reference's axis order. Keras runs images channels-last:
    ``cross`` is 1 when only the candidate is Keras, -1 when only the reference is, 0 otherwise."""
    moves: list = []
    if ref.ndim in (3, 4, 5) and cand.ndim == ref.ndim:
        first, last = layout_for(ref.ndim, False), layout_for(ref.ndim, True)
        moves = [(last, first), (first, last)] if cross >= 0 else [(first, last), (last, first)]
    order = (moves + [None]) if cross else ([None] + moves)
    for move in order:
        moved = cand if move is None else to_layout(cand, *move)
        if moved.shape == ref.shape:
            return moved
    return None


def _same_values(ref: np.ndarray, cand: np.ndarray, tol: Tolerance) -> bool:
    a = np.sort(ref.reshape(ref.shape[0], -1), axis=1)
    b = np.sort(cand.reshape(cand.shape[0], -1), axis=1)
    return bool(np.all(np.abs(a - b) <= tol.atol + tol.rtol * np.abs(a)))


# ---- which names are modules ---------------------------------------------------------------------------------


def _module_set(model: LoadedModel) -> set[str] | None:
    """Leaf module paths: from the PyTorch model itself, or from the ONNX graph's name scopes."""
    if model.kind == TORCH:
        module = _torch_module(model)
        if module is None:
            return None
        return {n for n, m in module.named_modules() if n and not any(True for _ in m.children())}
    if model.kind == ONNX:
        import onnx

        paths: set[str] = set()
        for node in onnx.load(str(model.handle), load_external_data=False).graph.node:
            paths.update(p for p in _scopes(node)[:-1] if p)
        return {p for p in paths if not any(q.startswith(p + ".") for q in paths)} or None
    return None


def _scopes(node: Any) -> list[str]:
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            return re.findall(r"'([^']*)'", prop.value)
    return []


def keras_module(name: str, modules: set[str] | None) -> str | None:
    """The module a Keras layer name stands for. crossport names layers after the module path with ``_`` for
    ``.`` (``converter.keras_builder.context.layer_name_for``), so names are compared in that form: ``bn2`` -> bn2,
    ``layer1_0_conv1_1`` -> layer1.0.conv1, ``pool_max_pool2d`` -> pool, ``conv2_pad`` -> conv2, and the older
    exporters' repeated scopes ``layer1_layer1_0_layer1_0_relu_relu_1`` -> layer1.0.relu. Dotted names (other
    tools' Keras files) match the same way."""
    from converter.keras_builder.context import layer_name_for

    if modules is None:
        return name
    if name in modules:
        return name
    by_name = {layer_name_for(m): m for m in modules}
    flat = layer_name_for(name)
    if flat in by_name:
        return by_name[flat]
    m = re.fullmatch(r"(.+)_\d+", flat)
    if m and m.group(1) in by_name:
        return by_name[m.group(1)]
    # a module path followed by the op's own name: the longest module that ends just before an "_"
    hits = [key for key in by_name if flat.startswith(key + "_") or f"_{key}_" in flat]
    return by_name[max(hits, key=len)] if hits else None


# ---- probes per framework ------------------------------------------------------------------------------------


def _probes(model: LoadedModel, feeds: Sequence[np.ndarray], modules: set[str] | None) -> list[Probe]:
    feeds = model.own_order(feeds)
    if model.kind == TORCH:
        return _torch_probes(model, feeds)
    if model.kind == ONNX:
        return _onnx_probes(model, feeds, modules)
    return _keras_probes(model, feeds, modules)


# ExportedProgram -> its unflattened module (the module hierarchy hooks need), for the last program probed.
_UNFLATTENED: dict[int, tuple[Any, Any]] = {}


def _torch_module(model: LoadedModel) -> Any:
    import torch

    handle = model.handle
    if isinstance(handle, torch.export.ExportedProgram):
        cached = _UNFLATTENED.get(id(handle))
        if cached is None or cached[0] is not handle:
            _UNFLATTENED.clear()  # keep one: a test session may check many models
            cached = _UNFLATTENED[id(handle)] = (handle, torch.export.unflatten(handle))
        return cached[1]
    if isinstance(handle, torch.jit.ScriptModule):
        return None
    return handle if isinstance(handle, torch.nn.Module) else None


def _torch_probes(model: LoadedModel, feeds: Sequence[np.ndarray]) -> list[Probe]:
    import torch

    module = _torch_module(model)
    if module is None:
        raise _NoProbes(f"per-layer outputs are not available for {model.format} (no module hierarchy to hook)")
    probes: list[Probe] = []
    handles = []

    def hook(name: str):  # noqa: ANN202
        def record(_m: Any, _inp: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                probes.append((name, out.detach().cpu().numpy().copy()))
        return record

    for name, sub in module.named_modules():
        if name and not any(True for _ in sub.children()):
            handles.append(sub.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            module(*[torch.from_numpy(np.ascontiguousarray(f)) for f in feeds])
    finally:
        for h in handles:
            h.remove()
    return probes


def _runs(items: Sequence[tuple[str | None, Any]]) -> list[tuple[str, Any]]:
    """Consecutive items of one module are one call; its output is the last item's."""
    out: list[tuple[str, Any]] = []
    prev = None
    for key, value in items:
        if key is None:
            prev = None
            continue
        if key == prev:
            out[-1] = (key, value)
        else:
            out.append((key, value))
        prev = key
    return out


def _onnx_probes(model: LoadedModel, feeds: Sequence[np.ndarray], modules: set[str] | None) -> list[Probe]:
    import onnx
    import onnxruntime as ort

    graph_model = onnx.load(str(model.handle))
    items: list[tuple[str | None, Any]] = []
    for node in graph_model.graph.node:
        scopes = [s for s in _scopes(node) if s]
        key = scopes[-2] if len(scopes) >= 2 else None
        if key is not None and modules is not None and key not in modules:
            key = None
        items.append((key, node.output[0] if node.output else None))
    runs = [(k, v) for k, v in _runs(items) if v]
    if not runs:
        raise _NoProbes("the ONNX graph records no module names (export with torch.onnx.export(dynamo=True))")
    existing = {o.name for o in graph_model.graph.output}
    for _, value in runs:
        if value not in existing:
            graph_model.graph.output.append(onnx.helper.make_empty_tensor_value_info(value))
            existing.add(value)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(graph_model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    wanted = [v for _, v in runs]
    values = session.run(wanted, dict(zip(names, feeds)))
    return [(k, np.asarray(a)) for (k, _), a in zip(runs, values)]


def _keras_probes(model: LoadedModel, feeds: Sequence[np.ndarray], modules: set[str] | None) -> list[Probe]:
    from converter.frameworks import keras

    k = keras()
    kmodel = model.handle
    items = []
    for layer in kmodel.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        items.append((keras_module(layer.name, modules), layer))
    runs = _runs(items)
    if not runs:
        raise _NoProbes("no Keras layer name matches a module of the other model")
    probe_model = k.Model(kmodel.inputs, [layer.output for _, layer in runs])
    outs = probe_model(list(feeds), training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [(key, np.asarray(o)) for (key, _), o in zip(runs, outs)]
