"""Golden files for CI: inputs and reference outputs stored once, checked later without the reference framework.

A golden directory holds ``inputs.npz`` and ``outputs.npz`` (keys ``set<K>__<I>``), and ``golden.json``: the
tensors and their layouts, the input sets, tolerances, route/opset, tool versions and SHA-256 hashes of the two
array files and of the candidate. When a later check fails, the differences in versions and hashes are reported
("tensorflow 2.19.0 -> 2.20.0") so an upgrade that changed the numbers is visible.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.errors import InputPathError, ModelFileError, OutputError
from converter.layout import Layout
from converter.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL
from converter.parity.inputs import InputSet

GOLDEN_SCHEMA_VERSION = 1
MANIFEST = "golden.json"


def sha256(path: Path) -> str:
    """Of a file, or of every file of a directory (a SavedModel) in sorted order."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def save(directory: Path, report: Any, sets: Sequence[InputSet], ref_outputs: Sequence[Sequence[np.ndarray]],
         candidate: Any) -> Path:
    """Write the golden files for a verification that just ran (``report`` and the recorded reference outputs)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "inputs.npz", **{f"set{k}__{i}": a for k, s in enumerate(sets)
                                              for i, a in enumerate(s.arrays)})
        np.savez(directory / "outputs.npz", **{f"set{k}__{j}": np.asarray(o) for k, outs in enumerate(ref_outputs)
                                               for j, o in enumerate(outs)})
    except OSError as err:
        raise OutputError(f"{directory}: cannot write golden files ({err.strerror})") from err
    cand_path = Path(str(candidate)) if isinstance(candidate, (str, Path)) else None
    manifest = {
        "schema_version": GOLDEN_SCHEMA_VERSION, "kind": "crossport.golden",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "reference": report.reference.to_dict(), "candidate": report.candidate.to_dict(),
        "candidate_sha256": sha256(cand_path) if cand_path is not None and cand_path.exists() else None,
        "inputs": [t.to_dict() for t in report.inputs], "outputs": [t.to_dict() for t in report.outputs],
        "input_sets": list(report.input_sets),
        "tolerance": {"atol": report.tolerance.atol, "rtol": report.tolerance.rtol,
                      "per_output": {k: list(v) for k, v in report.per_output_tolerance.items()}},
        "route": list(report.route), "opset": report.opset, "versions": report.versions,
        "passed_when_saved": report.passed,
        "sha256": {"inputs.npz": sha256(directory / "inputs.npz"), "outputs.npz": sha256(directory / "outputs.npz")},
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return directory


@dataclass
class GoldenRunner:
    """Replays stored reference outputs for the stored inputs (matched by content hash)."""

    outputs: dict[str, list[np.ndarray]]
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...] = ()
    name: str = "golden outputs"

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        key = _key(feeds)
        if key not in self.outputs:
            raise ModelFileError("golden files hold no outputs for these inputs (inputs must come from inputs.npz)")
        return list(self.outputs[key])


def _key(arrays: Sequence[np.ndarray]) -> str:
    h = hashlib.sha1()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.shape).encode() + str(a.dtype).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Golden:
    directory: Path
    manifest: dict[str, Any]
    sets: tuple[InputSet, ...]
    outputs: tuple[tuple[np.ndarray, ...], ...] = field(default_factory=tuple)


def load(directory: str | Path) -> Golden:
    d = Path(directory)
    if not (d / MANIFEST).is_file():
        raise InputPathError(f"{d}: not a golden directory (no {MANIFEST}); create one with --save-golden")
    try:
        manifest = json.loads((d / MANIFEST).read_text())
    except json.JSONDecodeError as err:
        raise ModelFileError(f"{d / MANIFEST}: not valid JSON ({err})") from err
    if manifest.get("kind") != "crossport.golden":
        raise ModelFileError(f"{d / MANIFEST}: not a crossport golden manifest")
    for name, digest in manifest.get("sha256", {}).items():
        if not (d / name).is_file() or sha256(d / name) != digest:
            raise ModelFileError(f"{d / name}: missing or changed since the golden files were saved (hash differs)")
    n_in, n_out = len(manifest["inputs"]), len(manifest["outputs"])
    with np.load(d / "inputs.npz", allow_pickle=False) as ins, np.load(d / "outputs.npz", allow_pickle=False) as outs:
        sets = []
        results = []
        for k, desc in enumerate(manifest["input_sets"]):
            arrays = tuple(ins[f"set{k}__{i}"] for i in range(n_in))
            sets.append(InputSet(desc["label"], int(desc["seed"]), desc["distribution"], arrays))
            results.append(tuple(outs[f"set{k}__{j}"] for j in range(n_out)))
    return Golden(d, manifest, tuple(sets), tuple(results))


def verify_golden(candidate: Any, directory: str | Path, options: Any) -> Any:
    """Check ``candidate`` against golden files; tolerances default to the ones stored with them."""
    from converter.parity import layouts as L
    from converter.parity.loaders import LoadedModel, load_model
    from converter.parity.comparison import compare_models, match_inputs_by_name

    g = load(directory)
    m = g.manifest
    names = tuple(t["name"] for t in m["inputs"])
    cand = match_inputs_by_name(load_model(candidate, options.load), names)
    in_ref = tuple(Layout(t["reference_layout"]) for t in m["inputs"])
    flags = tuple(L.parse_layout_flag(f) for f in options.layouts)
    stored_cand = tuple((t["name"], t["reference_layout"], t["candidate_layout"]) for t in m["inputs"])
    _, in_cand, why = L.resolve(names, [a.ndim for a in g.sets[0].arrays], "golden", cand.kind, flags, stored_cand)
    # The stored candidate layouts are for the model verified then; another candidate (the ONNX file of the same
    # conversion, say) may take the reference's layout instead — its signature tells.
    refit = False
    fixed = list(in_cand)
    for k, a in enumerate(g.sets[0].arrays):
        cshape = cand.input_shapes[k] if k < len(cand.input_shapes) else None
        if why[k] == "manifest" and cshape is not None and not L.shapes_agree(
                L.moved_shape(a.shape, in_ref[k], in_cand[k]), cshape) and L.shapes_agree(a.shape, cshape):
            fixed[k], refit = in_ref[k], True
    in_cand = tuple(fixed)
    runner = GoldenRunner({_key(s.arrays): list(o) for s, o in zip(g.sets, g.outputs)}, in_ref)
    ref = LoadedModel(str(g.directory), "golden", "golden", runner, names,
                      tuple(tuple(a.shape) for a in g.sets[0].arrays), tuple(str(a.dtype) for a in g.sets[0].arrays),
                      tuple(t["name"] for t in m["outputs"]))
    if (options.atol, options.rtol) == (DEFAULT_ATOL, DEFAULT_RTOL) and not options.tolerances:
        tol = m.get("tolerance", {})
        per = tuple((k, float(v[0]), float(v[1])) for k, v in tol.get("per_output", {}).items())
        options = replace(options, atol=float(tol.get("atol", DEFAULT_ATOL)), rtol=float(tol.get("rtol", DEFAULT_RTOL)),
                          tolerances=per)
    out_rows = tuple((t["name"], t["reference_layout"], t["reference_layout" if refit else "candidate_layout"])
                     for t in m["outputs"])
    report, _ = compare_models(ref, cand, g.sets, names, (in_ref, in_cand, why), flags, out_rows,
                               replace(options, layers=False, localize=False))
    changes = _changes(m, report.versions, candidate)
    return replace(report, golden=str(g.directory), golden_changes=tuple(changes),
                   route=tuple(m.get("route", ())), opset=m.get("opset"))


def _changes(manifest: dict[str, Any], versions: dict[str, str], candidate: Any) -> list[str]:
    out = []
    old = manifest.get("versions", {})
    for k in sorted(set(old) | set(versions)):
        if old.get(k) != versions.get(k):
            out.append(f"{k} {old.get(k, 'absent')} -> {versions.get(k, 'absent')}")
    digest = manifest.get("candidate_sha256")
    path = Path(str(candidate)) if isinstance(candidate, (str, Path)) else None
    stored = Path(str(manifest.get("candidate", {}).get("path", "")))
    if digest and path is not None and path.exists() and path.name == stored.name and sha256(path) != digest:
        out.append("the candidate file differs from the one verified when the golden files were saved")
    return out
