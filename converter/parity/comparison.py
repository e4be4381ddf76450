"""The core ``verify`` and the golden check share: match the candidate's inputs to the reference's, run one hop,
draw error histograms, localize the first divergent layer when asked or when the outputs differ."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

import numpy as np

from converter.errors import ShapeError, described
from converter.layout import Layout, to_layout
from converter.parity import layouts as L
from converter.parity.compare import Tolerance
from converter.parity.inputs import InputSet
from converter.parity.loaders import LoadedModel
from converter.parity.options import VerifyOptions
from converter.parity.report import run_hop
from converter.parity.result import ModelInfo, TensorLayout, VerifyReport
from converter.parity.runners import Runner
from converter.reporting import versions


class _FeedOrder:
    """A runner taking feeds in the reference's input order and passing them on in the model's own order."""

    def __init__(self, runner: Runner, order: Sequence[int]) -> None:
        self.inner = runner
        self.name = runner.name
        self.order = list(order)
        self.input_layouts: tuple[Layout, ...] = runner.input_layouts
        self.output_layouts: tuple[Layout, ...] = runner.output_layouts

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.inner.run([feeds[i] for i in self.order])


def match_inputs_by_name(cand: LoadedModel, names: Sequence[str]) -> LoadedModel:
    """Inputs are matched by name where both sides name them (a SavedModel signature sorts them), else by order."""
    own = tuple(cand.input_names)
    if not own or len(own) != len(names) or set(own) != set(names) or own == tuple(names):
        return cand
    order = tuple(list(names).index(n) for n in own)  # own input j <- reference input order[j]
    back = [own.index(n) for n in names]  # reference input k <- own input back[k]

    def by_ref(values: Sequence[Any]) -> tuple:
        return tuple(values[j] for j in back) if len(values) == len(own) else tuple(values)

    return replace(cand, runner=_FeedOrder(cand.runner, order), input_names=tuple(names),
                   input_shapes=by_ref(cand.input_shapes), input_dtypes=by_ref(cand.input_dtypes), feed_order=order)



class _Recording:
    """Wraps a runner: remembers every output list (to draw error histograms and save golden outputs)."""

    def __init__(self, runner: Runner, order: Sequence[int] | None = None) -> None:
        self.inner = runner
        self.name = runner.name
        self.input_layouts = runner.input_layouts
        self.output_layouts = runner.output_layouts
        self.order = list(order) if order else None
        self.calls: list[list[np.ndarray]] = []

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = [np.asarray(o) for o in self.inner.run(feeds)]
        if self.order is not None and len(out) == len(self.order):
            out = [out[i] for i in self.order]
        self.calls.append(out)
        return out


def compare_models(ref: LoadedModel, cand: LoadedModel, sets: Sequence[InputSet], names: Sequence[str],
                   in_layouts: tuple[tuple[Layout, ...], tuple[Layout, ...], tuple[str, ...]],
                   flags: Sequence[L.LayoutFlag], manifest_outputs: Sequence[tuple[str, str, str]],
                   options: VerifyOptions) -> tuple[VerifyReport, list[list[np.ndarray]]]:
    """The shared core of ``verify`` and the golden check: one hop, histograms, per-layer localization."""
    in_ref, in_cand, in_why = in_layouts
    ref.runner.input_layouts = tuple(in_ref)
    cand.runner.input_layouts = tuple(in_cand)
    ref.runner.output_layouts, cand.runner.output_layouts = (), ()
    first = sets[0].arrays
    t0 = time.perf_counter()
    ref_probe = _run_plain(ref, first, in_ref)
    cand_probe = _run_plain(cand, [to_layout(a, s, d) for a, s, d in zip(first, in_ref, in_cand)], in_cand)
    out_names, order = _output_names(ref, cand, manifest_outputs, len(ref_probe), len(cand_probe))
    ranks = [o.ndim for o in ref_probe]
    out_ref, out_cand, out_why = L.resolve(out_names, ranks, ref.kind, cand.kind, flags, manifest_outputs)
    ordered = [cand_probe[i] for i in order] if order else cand_probe
    for k, (r, c) in enumerate(zip(ref_probe, ordered)):
        L.check_transpose("output", out_names[k], r.shape, c.shape, out_why[k], "")
    ref.runner.output_layouts = out_ref
    cand.runner.output_layouts = out_cand
    tols = {n: Tolerance(options.atol, options.rtol, options.scale) for n in out_names}
    for name, atol, rtol in options.tolerances:
        if name not in tols:
            raise ShapeError(f"--tol {name}: not an output name (outputs: {list(out_names)})")
        tols[name] = Tolerance(atol, rtol, options.scale)
    rec_ref, rec_cand = _Recording(ref.runner), _Recording(cand.runner, order)
    hop = run_hop(rec_ref, rec_cand, sets, in_ref, out_names, tols)
    timings = {"run": time.perf_counter() - t0}
    histograms = _histograms(rec_ref.calls, rec_cand.calls, out_names, out_ref, out_cand)
    profile = None
    notes: list[str] = []
    if (options.layers or (not hop.passed and options.localize)) and not hop.error:
        from converter.parity.localize import localize

        t1 = time.perf_counter()
        ref_feeds = [to_layout(a, s, d) for a, s, d in zip(first, in_ref, in_ref)]
        cand_feeds = [to_layout(a, s, d) for a, s, d in zip(first, in_ref, in_cand)]
        try:
            default = Tolerance(options.atol, options.rtol, options.scale)
            profile = localize(ref, cand, ref_feeds, cand_feeds, default)
        except Exception as err:  # noqa: BLE001 - localization is a diagnosis; its failure must not hide the verdict
            notes.append(f"per-layer localization failed: {described(err)}")
        timings["layers"] = time.perf_counter() - t1
    tensors_in = tuple(TensorLayout(n, tuple(a.shape), str(a.dtype), r.value, c.value, w)
                       for n, a, r, c, w in zip(names, first, in_ref, in_cand, in_why))
    tensors_out = tuple(TensorLayout(n, tuple(o.shape), str(o.dtype), r.value, c.value, w)
                        for n, o, r, c, w in zip(out_names, ref_probe, out_ref, out_cand, out_why))
    notes.extend(n for n in ref.notes + cand.notes)
    report = VerifyReport(
        reference=_info(ref), candidate=_info(cand), passed=hop.passed, hop=hop, inputs=tensors_in,
        outputs=tensors_out, input_sets=tuple(s.describe() for s in sets),
        tolerance=Tolerance(options.atol, options.rtol, options.scale),
        per_output_tolerance={n: (t.atol, t.rtol) for n, t in tols.items()
                              if (t.atol, t.rtol) != (options.atol, options.rtol)},
        layers=profile, histograms=tuple(histograms), versions=versions(("crossport", "numpy", "torch", "onnx", "onnxruntime", "tensorflow", "keras")), command=options.command,
        timings=timings, notes=tuple(notes),
    )
    return report, rec_ref.calls


def _run_plain(model: LoadedModel, feeds: Sequence[np.ndarray], layouts: Sequence[Layout]) -> list[np.ndarray]:
    try:
        return [np.asarray(o) for o in model.runner.run(list(feeds))]
    except Exception as err:  # noqa: BLE001 - user models raise anything on bad inputs
        shapes = [list(np.shape(f)) for f in feeds]
        raise ShapeError(f"{model.source} ({model.format}) does not run on inputs of shape {shapes} "
                         f"(layouts {[l.value for l in layouts]}): "
                         f"{described(err)}") from err


def _output_names(ref: LoadedModel, cand: LoadedModel, manifest_outputs: Sequence[tuple[str, str, str]],
                  n_ref: int, n_cand: int) -> tuple[tuple[str, ...], list[int] | None]:
    """Names for the outputs, and the candidate order that matches them by name (None: by position)."""
    r = tuple(ref.output_names) if len(ref.output_names) == n_ref else ()
    c = tuple(cand.output_names) if len(cand.output_names) == n_cand else ()
    m = tuple(row[0] for row in manifest_outputs) if len(manifest_outputs) == n_ref else ()
    names = r or m or c or tuple(f"output{k}" for k in range(n_ref))
    order = None
    if c and set(names) == set(c) and names != c:
        order = [c.index(n) for n in names]
    if len(set(names)) != len(names):
        names = tuple(f"output{k}" for k in range(n_ref))
    return names, order


def _histograms(ref_calls: list[list[np.ndarray]], cand_calls: list[list[np.ndarray]], names: Sequence[str],
                out_ref: Sequence[Layout], out_cand: Sequence[Layout]) -> list[dict[str, Any]]:
    """Per output: counts of log10 |candidate - reference| over every input set (for the HTML plot)."""
    out = []
    for k, name in enumerate(names):
        errs = []
        for r, c in zip(ref_calls, cand_calls):
            if k >= len(r) or k >= len(c):
                continue
            cc = to_layout(c[k], out_cand[k], out_ref[k])
            if cc.shape != r[k].shape:
                continue
            errs.append(np.abs(cc.astype(np.float64) - r[k].astype(np.float64)).ravel())
        if not errs:
            out.append({"name": name, "log10_edges": [], "counts": [], "zeros": 0, "nonfinite": 0})
            continue
        e = np.concatenate(errs)
        finite = e[np.isfinite(e)]
        zeros = int(np.count_nonzero(finite == 0))
        pos = finite[finite > 0]
        if pos.size:
            lo = float(np.floor(np.log10(pos.min())))
            hi = float(np.ceil(np.log10(pos.max())))
            hi = max(hi, lo + 1)
            edges = np.linspace(lo, hi, 25)
            counts, _ = np.histogram(np.log10(pos), bins=edges)
        else:
            edges, counts = np.array([]), np.array([])
        out.append({"name": name, "log10_edges": [round(float(x), 4) for x in edges],
                    "counts": [int(x) for x in counts], "zeros": zeros, "nonfinite": int(e.size - finite.size)})
    return out


def _info(model: LoadedModel) -> ModelInfo:
    return ModelInfo(model.source, model.format, model.kind, model.runner.name)
