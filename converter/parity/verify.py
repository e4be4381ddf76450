"""``crossport verify``: run a reference and a candidate model on the same seeded inputs and compare every output.

One library function (``verify``) behind the CLI, the pytest plugin and ``converter.testing``. Steps: load both
models, decide the inputs (``--inputs`` file or drawn from the signature), decide layouts (``layouts.py``), run one
hop (``report.run_hop``), and when it fails — or ``layers=True`` — find the first divergent layer (``localize.py``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.errors import InputPathError, ModelFileError, ShapeError
from converter.layout import Layout
from converter.parity import layouts as L
from converter.parity.comparison import compare_models, match_inputs_by_name
from converter.parity.inputs import InputSet, InputSpec, make_input_sets
from converter.parity.loaders import LoadedModel, load_model
from converter.parity.options import VerifyOptions
from converter.parity.result import VerifyReport

__all__ = ["VerifyOptions", "verify"]


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
                     notes=(*report.notes, *(m.note for m in (ref_manifest, manifest) if m and m.note)),
                     route=used.route if used else (), opset=used.opset if used else None,
                     timings={**timings, **report.timings}, dynamic_batch=dynamic)
    if options.save_golden:
        from converter.parity import golden

        golden.save(Path(options.save_golden), report, sets, ref_outputs, candidate)
    return report


# ---- inputs --------------------------------------------------------------------------------------------------


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
    from converter.input_shapes import check_range_names, int_range_for

    check_range_names(options.int_ranges, list(names) or list(ref.input_names))
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
        specs = [InputSpec(nm[k], tuple(s), options.input_dtype or _dtype(dtypes, k),
                           int_range_for(nm[k], options.int_ranges)) for k, s in enumerate(shapes)]
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
                       int_range_for(nm[k], options.int_ranges)) for k, s in enumerate(shapes)]
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
