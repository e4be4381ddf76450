"""``crossport verify``: run a reference and a candidate model on the same seeded inputs and compare every output.

One library function (``verify``) behind the CLI, the pytest plugin and ``converter.testing``. Steps: load both
models, decide the inputs (``--inputs`` file or drawn from the signature), decide layouts (``layouts.py``), run one
hop (``report.run_hop``), and when it fails — or ``layers=True`` — find the first divergent layer (``localize.py``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.errors import InputPathError, ModelFileError, ShapeError
from converter.layout import Layout, to_layout
from converter.parity import layouts as L
from converter.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from converter.parity.inputs import InputSet, InputSpec, make_input_sets
from converter.parity.loaders import LoadedModel, LoadOptions, load_model
from converter.parity.report import run_hop
from converter.parity.result import ModelInfo, TensorLayout, VerifyReport


@dataclass(frozen=True)
class VerifyOptions:
    """Everything ``verify`` needs besides the two models; the CLI, the plugin and ``assert_parity`` fill it."""

    inputs: str | None = None  # .npz with real inputs, in the reference's layout
    input_shapes: tuple[tuple[str | None, tuple[int, ...]], ...] = ()
    input_dtype: str | None = None
    seed: int = 0
    distributions: tuple[str, ...] = ("normal", "uniform", "large")
    int_range: tuple[int, int] | None = None
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    tolerances: tuple[tuple[str, float, float], ...] = ()  # per output: (name, atol, rtol)
    layouts: tuple[str, ...] = ()  # "--layout" strings: [ref:|cand:]NAME=LAYOUT
    manifest: str | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    layers: bool = False  # per-layer profile even when the outputs match
    localize: bool = True  # look for the first divergent layer when they do not
    save_golden: str | None = None
    command: str = ""  # the command line that reproduces this check, for the report


def verify(reference: Any, candidate: Any, options: VerifyOptions = VerifyOptions(),
           inputs: Any = None) -> VerifyReport:
    """Compare ``candidate`` against ``reference`` (paths, nn.Modules or keras.Models).

    ``inputs``: arrays in the reference's layout — one array, a sequence (one per input), a dict by input name,
    or a list of such batches. Returns the report (``report.passed``); raises ``CrossportError`` subclasses for
    problems with the models or the options.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    ref = load_model(reference, options.load)
    cand = load_model(candidate, options.load)
    timings["load"] = time.perf_counter() - t0
    manifest = L.find_manifest(str(candidate), options.manifest) if isinstance(candidate, (str, Path)) else (
        L.find_manifest("", options.manifest) if options.manifest else None)
    ref_manifest = L.find_manifest(str(reference), None) if isinstance(reference, (str, Path)) else None
    in_rows = L.merge_rows(ref_manifest, manifest, ref.kind, cand.kind, "inputs")
    out_rows = L.merge_rows(ref_manifest, manifest, ref.kind, cand.kind, "outputs")
    flags = tuple(L.parse_layout_flag(f) for f in options.layouts)
    names = ref.input_names or cand.input_names or tuple(r[0] for r in in_rows)
    cand = match_inputs_by_name(cand, names)
    sets = _given_sets(inputs, options, names)
    specs: list[InputSpec] = []
    dynamic = False
    if sets is None:
        specs, dynamic = _specs(ref, cand, options, names, flags, in_rows)
        sets = make_input_sets(specs, seed=options.seed, dynamic_batch=dynamic, distributions=options.distributions)
        names = tuple(s.name for s in specs)
    n_in = len(sets[0].arrays)
    names = tuple(names)[:n_in] if len(names) >= n_in else tuple(f"input{k}" for k in range(n_in))
    ranks = [a.ndim for a in sets[0].arrays]
    in_ref, in_cand, in_why = L.resolve(names, ranks, ref.kind, cand.kind, flags, in_rows)
    _check_inputs(names, sets[0].arrays, cand, in_ref, in_cand, in_why)
    t1 = time.perf_counter()
    report, ref_outputs = compare_models(ref, cand, sets, names, (in_ref, in_cand, in_why), flags, out_rows, options)
    timings["compare"] = time.perf_counter() - t1
    used = manifest or ref_manifest
    report = replace(report, manifest=", ".join(m.path for m in (ref_manifest, manifest) if m) or None,
                     route=used.route if used else (), opset=used.opset if used else None,
                     timings={**timings, **report.timings}, dynamic_batch=dynamic)
    if options.save_golden:
        from converter.parity import golden

        golden.save(Path(options.save_golden), report, sets, ref_outputs, candidate)
    return report


# ---- inputs --------------------------------------------------------------------------------------------------


class _FeedOrder:
    """A runner taking feeds in the reference's input order and passing them on in the model's own order."""

    def __init__(self, runner: Any, order: Sequence[int]) -> None:
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


def _given_sets(inputs: Any, options: VerifyOptions, names: Sequence[str]) -> list[InputSet] | None:
    if inputs is None and options.inputs is None:
        return None
    if options.inputs is not None:
        path = Path(options.inputs)
        if not path.is_file():
            raise InputPathError(f"--inputs {options.inputs}: no such file")
        try:
            with np.load(path, allow_pickle=False) as data:
                inputs = {k: data[k] for k in data.files}
        except Exception as err:  # noqa: BLE001 - np.load raises several kinds for a bad file
            raise ModelFileError(f"--inputs {options.inputs}: not a readable .npz ({err})") from err
    batches = inputs if isinstance(inputs, list) and inputs and not _is_array(inputs[0]) else [inputs]
    out = []
    for k, batch in enumerate(batches):
        arrays = _arrays(batch, names)
        out.append(InputSet(label=f"given-{k}" if len(batches) > 1 else "given", seed=options.seed,
                            distribution="given", arrays=arrays))
    return out


def _is_array(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _arrays(batch: Any, names: Sequence[str]) -> tuple[np.ndarray, ...]:
    def arr(x: Any) -> np.ndarray:
        if hasattr(x, "detach"):
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    if isinstance(batch, dict):
        if names and all(n in batch for n in names):
            return tuple(arr(batch[n]) for n in names)
        keys = list(batch)
        if names and len(keys) != len(names):
            raise ShapeError(f"inputs have keys {keys}; the model's inputs are {list(names)}")
        return tuple(arr(batch[k]) for k in keys)
    if _is_array(batch) or hasattr(batch, "detach"):
        return (arr(batch),)
    if isinstance(batch, (list, tuple)):
        return tuple(arr(x) for x in batch)
    raise ShapeError(f"inputs: expected arrays, a sequence of arrays or a dict by input name, "
                     f"not {type(batch).__name__}")


def _specs(ref: LoadedModel, cand: LoadedModel, options: VerifyOptions, names: Sequence[str],
           flags: Sequence[L.LayoutFlag], rows: Sequence[tuple[str, str, str]]) -> tuple[list[InputSpec], bool]:
    """Input specs in the reference's layout: --input-shape, else the reference's signature, else the candidate's."""
    int_range = options.int_range or (0, 10)
    dtypes = ref.input_dtypes or cand.input_dtypes
    if options.input_shapes:
        given = list(options.input_shapes)
        named = {n: s for n, s in given if n}
        if named and names:
            unknown = [n for n in named if n not in names]
            if unknown:
                raise ShapeError(f"--input-shape names {unknown} are not inputs of the reference "
                                 f"(inputs: {list(names)})")
            shapes = [named.get(n) for n in names]
            if any(s is None for s in shapes):
                missing = [n for n, s in zip(names, shapes) if s is None]
                raise ShapeError(f"--input-shape: no shape for input(s) {missing}")
        else:
            shapes = [s for _, s in given]
        nm = list(names) if len(names) == len(shapes) else [n or f"input{k}" for k, (n, _) in enumerate(given)]
        dyn = (_batch_dynamic(ref), _batch_dynamic(cand))
        specs = [InputSpec(nm[k], tuple(s), options.input_dtype or _dtype(dtypes, k), int_range)
                 for k, s in enumerate(shapes)]
        return specs, False not in dyn and True in dyn
    source, moved = ref, False
    if not ref.has_signature:
        if not cand.has_signature:
            raise ShapeError("neither model records its input shapes; pass --input-shape, e.g. --input-shape "
                             "1x3x224x224 (in the reference's layout), or --inputs data.npz")
        source, moved = cand, True
    shapes = []
    dynamic = False
    for k, shape in enumerate(source.input_shapes):
        shape = tuple(shape or ())
        if shape and shape[0] is None:
            dynamic = True
            shape = (2, *shape[1:])
        if any(d is None for d in shape):
            raise ShapeError(f"input {source.input_names[k]!r} has dynamic dimensions {list(shape)}; pass "
                             f"--input-shape {source.input_names[k]}=... (in the reference's layout)")
        shapes.append(shape)
    if moved:  # the candidate's signature, taken back into the reference's layout
        n = tuple(names) or source.input_names
        r, c, _ = L.resolve(n, [len(s) for s in shapes], ref.kind, cand.kind, flags, rows)
        shapes = [L.moved_shape(s, ci, ri) for s, ri, ci in zip(shapes, r, c)]
    other = cand if source is ref else ref
    dynamic = dynamic and _batch_dynamic(other) is not False
    nm = list(names) if len(names) == len(shapes) else list(source.input_names)
    specs = [InputSpec(nm[k], tuple(int(d) for d in s), options.input_dtype or _dtype(source.input_dtypes, k),
                       int_range) for k, s in enumerate(shapes)]
    return specs, dynamic


def _batch_dynamic(model: LoadedModel) -> bool | None:
    if not model.input_shapes or any(s is None for s in model.input_shapes):
        return None
    return all(bool(s) and s[0] is None for s in model.input_shapes)


def _dtype(dtypes: Sequence[str], k: int) -> str:
    d = dtypes[k] if k < len(dtypes) else "float32"
    return {"float": "float32", "double": "float64", "long": "int64", "int": "int32"}.get(d, d)


def _check_inputs(names: Sequence[str], arrays: Sequence[np.ndarray], cand: LoadedModel, in_ref: Sequence[Layout],
                  in_cand: Sequence[Layout], why: Sequence[str]) -> None:
    if cand.input_shapes and len(cand.input_shapes) != len(arrays):
        raise ShapeError(f"the reference takes {len(arrays)} input(s) {list(names)}, the candidate "
                         f"{len(cand.input_shapes)} {list(cand.input_names)}")
    for k, (name, arr) in enumerate(zip(names, arrays)):
        cshape = cand.input_shapes[k] if k < len(cand.input_shapes) else None
        if cshape is None:
            continue
        L.check_transpose("input", name, arr.shape, cshape, why[k], "")
        moved = L.moved_shape(arr.shape, in_ref[k], in_cand[k])
        if not L.shapes_agree(moved, cshape):
            raise ShapeError(f"input {name!r}: shape {list(arr.shape)} ({in_ref[k].value}) becomes {list(moved)} in "
                             f"the candidate's layout ({in_cand[k].value}), but the candidate expects "
                             f"{[d if d is not None else '?' for d in cshape]}")


# ---- the comparison ------------------------------------------------------------------------------------------


class _Recording:
    """Wraps a runner: remembers every output list (to draw error histograms and save golden outputs)."""

    def __init__(self, runner: Any, order: Sequence[int] | None = None) -> None:
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
    tols = {n: Tolerance(options.atol, options.rtol) for n in out_names}
    for name, atol, rtol in options.tolerances:
        if name not in tols:
            raise ShapeError(f"--tol {name}: not an output name (outputs: {list(out_names)})")
        tols[name] = Tolerance(atol, rtol)
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
            default = Tolerance(options.atol, options.rtol)
            profile = localize(ref, cand, ref_feeds, cand_feeds, default)
        except Exception as err:  # noqa: BLE001 - localization is a diagnosis; its failure must not hide the verdict
            notes.append(f"per-layer localization failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
        timings["layers"] = time.perf_counter() - t1
    tensors_in = tuple(TensorLayout(n, tuple(a.shape), str(a.dtype), r.value, c.value, w)
                       for n, a, r, c, w in zip(names, first, in_ref, in_cand, in_why))
    tensors_out = tuple(TensorLayout(n, tuple(o.shape), str(o.dtype), r.value, c.value, w)
                        for n, o, r, c, w in zip(out_names, ref_probe, out_ref, out_cand, out_why))
    notes.extend(n for n in ref.notes + cand.notes)
    report = VerifyReport(
        reference=_info(ref), candidate=_info(cand), passed=hop.passed, hop=hop, inputs=tensors_in,
        outputs=tensors_out, input_sets=tuple(s.describe() for s in sets),
        tolerance=Tolerance(options.atol, options.rtol),
        per_output_tolerance={n: (t.atol, t.rtol) for n, t in tols.items()
                              if (t.atol, t.rtol) != (options.atol, options.rtol)},
        layers=profile, histograms=tuple(histograms), versions=_versions(), command=options.command,
        timings=timings, notes=tuple(notes),
    )
    return report, rec_ref.calls


def _run_plain(model: LoadedModel, feeds: Sequence[np.ndarray], layouts: Sequence[Layout]) -> list[np.ndarray]:
    try:
        return [np.asarray(o) for o in model.runner.run(list(feeds))]
    except Exception as err:  # noqa: BLE001 - user models raise anything on bad inputs
        shapes = [list(np.shape(f)) for f in feeds]
        raise ShapeError(f"{model.source} ({model.format}) does not run on inputs of shape {shapes} "
                         f"(layouts {[l.value for l in layouts]}): {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0][:200] if str(err).strip() else ''}") from err


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


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in ("crossport", "numpy", "torch", "onnx", "onnxruntime", "tensorflow", "keras"):
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out
