"""Decide the layout of every input/output on each side — from flags, then a conversion manifest, never guessed.

Order of precedence per tensor: ``--layout [ref:|cand:]NAME=LAYOUT`` flags, then the crossport conversion report
beside the candidate (``<candidate>.crossport.json``: reference = ``source_layout``, candidate = ``target_layout``)
or, without one, the same contract embedded in the candidate file (``converter.contract``), then "same on both
sides". When only one side is named, the other takes its framework's convention
(PyTorch/ONNX channels-first, TensorFlow channels-last). If shapes then differ by exactly a channels transpose,
we stop with a one-line error that says what to pass (exit 7) instead of guessing.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from converter.errors import ModelFileError, ShapeError
from converter.layout import Layout, channels_last_perm, invert, layout_for

if TYPE_CHECKING:
    from converter.contract import Contract

REFERENCE, CANDIDATE = "ref", "cand"


@dataclass(frozen=True)
class LayoutFlag:
    """``--layout [ref:|cand:]NAME=LAYOUT``; NAME ``*`` means every tensor of that rank-compatible side."""

    side: str
    name: str
    layout: Layout


def parse_layout_flag(text: str) -> LayoutFlag:
    side = CANDIDATE
    body = text.strip()
    for prefix, s in (("ref:", REFERENCE), ("reference:", REFERENCE), ("cand:", CANDIDATE), ("candidate:", CANDIDATE)):
        if body.lower().startswith(prefix):
            side, body = s, body[len(prefix):]
            break
    name, sep, value = body.rpartition("=")
    if not sep or not name:
        raise ShapeError(f"--layout {text!r}: expected NAME=LAYOUT, e.g. x=nhwc or ref:x=nchw")
    try:
        layout = Layout(value.upper()) if value.lower() != "none" else Layout.NONE
    except ValueError as err:
        choices = ", ".join(l.value.lower() for l in Layout)
        raise ShapeError(f"--layout {text!r}: unknown layout {value!r}; expected one of {choices}") from err
    return LayoutFlag(side, name, layout)


@dataclass(frozen=True)
class Manifest:
    """What a crossport conversion report, or the contract embedded in the model, says about tensor layouts."""

    path: str  # the sidecar/--manifest file, or "<model> (embedded contract)"
    inputs: tuple[tuple[str, str, str], ...]  # (name, source layout, target layout)
    outputs: tuple[tuple[str, str, str], ...]
    route: tuple[str, ...] = ()
    opset: int | None = None
    source: str = ""
    note: str = ""  # which copy was used when the model has both, for the report


def find_manifest(candidate: str, explicit: str | None) -> Manifest | None:
    """``--manifest`` if given; else ``<candidate>.crossport.json`` beside the candidate and/or the contract
    embedded in the candidate (``converter.contract``): the sidecar when both agree, the embedded one when the
    sidecar is missing (a renamed or copied file); when they disagree nothing says which is right, so we stop."""
    from converter import contract as C

    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ModelFileError(f"--manifest {explicit}: no such file")
        return _manifest(_read_sidecar(path), str(path))
    path = Path(f"{str(candidate).rstrip('/')}.crossport.json")
    sidecar = _read_sidecar(path) if candidate and path.is_file() else None
    embedded = C.read(candidate) if candidate else None
    if embedded is None:
        return _manifest(sidecar, str(path)) if sidecar else None
    if sidecar is None:
        return _manifest(embedded, f"{candidate} (embedded contract)",
                         note=f"layouts from the contract embedded in {candidate} (no {path.name} beside it)")
    if (sidecar.inputs, sidecar.outputs) != (embedded.inputs, embedded.outputs):
        raise ShapeError(f"{path} and the contract embedded in {candidate} disagree on layouts (sidecar "
                         f"{_rows(sidecar)}; embedded {_rows(embedded)}); the sidecar may describe another model: "
                         "remove it, or pass --manifest FILE or --layout NAME=LAYOUT")
    return _manifest(sidecar, str(path), note=f"layouts from {path.name} (the same as the contract embedded in "
                                              f"{Path(candidate).name})")


def _read_sidecar(path: Path) -> Contract:
    from converter import contract as C

    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{path}: not a readable crossport report ({err})") from err
    if not isinstance(data, dict) or "inputs" not in data:
        raise ModelFileError(f"{path}: not a crossport conversion report (no 'inputs')")
    return C.from_dict(data)


def _manifest(c: Contract, where: str, note: str = "") -> Manifest:
    return Manifest(where, c.inputs, c.outputs, c.route, c.opset, c.source, note)


def _rows(c: Contract) -> str:
    return ", ".join(f"{n} {s}->{t}" for n, s, t in (*c.inputs, *c.outputs))


CONVENTION = "convention"  # placeholder in merged rows: the side's framework convention for the tensor's rank


def merge_rows(ref_manifest: Manifest | None, cand_manifest: Manifest | None, ref_kind: str, cand_kind: str,
               key: str) -> tuple[tuple[str, str, str], ...]:
    """Rows (name, reference layout, candidate layout) from the manifests beside the two models.

    A model's own manifest gives its ``target_layout``. The other side, when it has none, takes the manifest's
    ``source_layout`` if it is a PyTorch/ONNX model (crossport converts from those), else its framework convention.
    """
    from converter.parity.loaders import CHANNELS_FIRST_KINDS

    own_c = getattr(cand_manifest, key) if cand_manifest else ()
    own_r = getattr(ref_manifest, key) if ref_manifest else ()
    base = own_c or own_r
    rows = []
    for k, (name, _, _) in enumerate(base):
        c = _row(own_c, name, k)
        r = _row(own_r, name, k)
        cand_l = c[2] if c else (r[1] if cand_kind in CHANNELS_FIRST_KINDS else CONVENTION)
        ref_l = r[2] if r else (c[1] if ref_kind in CHANNELS_FIRST_KINDS else CONVENTION)
        rows.append((name, ref_l, cand_l))
    return tuple(rows)


def _row(rows: Sequence[tuple[str, str, str]], name: str, k: int) -> tuple[str, str, str] | None:
    for r in rows:
        if r[0] == name:
            return r
    return rows[k] if k < len(rows) else None


def _to_layout(text: str) -> Layout:
    try:
        return Layout(text) if text.lower() != "none" else Layout.NONE
    except ValueError:
        return Layout(text.upper())


def convention(kind: str, rank: int) -> Layout:
    """The framework's own convention: PyTorch/ONNX channels-first, TensorFlow channels-last (rank 3-5)."""
    from converter.parity.loaders import CHANNELS_FIRST_KINDS

    if rank not in (3, 4, 5):
        return Layout.NONE
    return layout_for(rank, kind not in CHANNELS_FIRST_KINDS)


def resolve(names: Sequence[str], ranks: Sequence[int], ref_kind: str, cand_kind: str, flags: Sequence[LayoutFlag],
            manifest_rows: Sequence[tuple[str, str, str]]) -> tuple[tuple[Layout, ...], tuple[Layout, ...], tuple[str, ...]]:
    """Per tensor (by name, else position): (reference layouts, candidate layouts, where each decision came from)."""
    ref, cand, why = [], [], []
    by_name = {r[0]: r for r in manifest_rows}
    for k, (name, rank) in enumerate(zip(names, ranks)):
        r = _flag(flags, REFERENCE, name, k)
        c = _flag(flags, CANDIDATE, name, k)
        if r is not None or c is not None:
            ref.append(r if r is not None else convention(ref_kind, rank))
            cand.append(c if c is not None else convention(cand_kind, rank))
            why.append("--layout")
            continue
        row = by_name.get(name) or (manifest_rows[k] if k < len(manifest_rows) else None)
        if row is not None:
            ref.append(convention(ref_kind, rank) if row[1] == CONVENTION else _fit(_to_layout(row[1]), rank))
            cand.append(convention(cand_kind, rank) if row[2] == CONVENTION else _fit(_to_layout(row[2]), rank))
            why.append("manifest")
            continue
        ref.append(Layout.NONE)
        cand.append(Layout.NONE)
        why.append("same")
    return tuple(ref), tuple(cand), tuple(why)


def _fit(layout: Layout, rank: int) -> Layout:
    """A manifest layout for a tensor whose rank does not carry it (e.g. NCHW recorded for a rank-2 output)."""
    if layout == Layout.NONE or rank not in (3, 4, 5):
        return Layout.NONE
    return layout_for(rank, layout.channels_last)


def _flag(flags: Sequence[LayoutFlag], side: str, name: str, index: int) -> Layout | None:
    for f in flags:
        if f.side == side and (f.name == name or f.name == "*" or f.name == str(index)):
            return f.layout
    return None


def moved_shape(shape: Sequence[int | None], source: Layout, target: Layout) -> tuple[int | None, ...]:
    """The shape an array of ``shape`` in ``source`` layout has after ``converter.layout.to_layout`` to ``target``."""
    shape = tuple(shape)
    if source == target or Layout.NONE in (source, target) or source.channels_last == target.channels_last:
        return shape
    perm = channels_last_perm(len(shape)) if target.channels_last else invert(channels_last_perm(len(shape)))
    return tuple(shape[p] for p in perm)


def shapes_agree(a: Sequence[int | None], b: Sequence[int | None]) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def check_transpose(kind: str, name: str, ref_shape: Sequence[int | None], cand_shape: Sequence[int | None],
                    why: str, flag_hint: str) -> None:
    """Shapes that differ by a channels transpose with nothing saying so: stop and say what to pass."""
    if why != "same" or shapes_agree(ref_shape, cand_shape) or len(ref_shape) not in (3, 4, 5):
        return
    rank = len(ref_shape)
    for target in (layout_for(rank, True), layout_for(rank, False)):
        for source in (layout_for(rank, False), layout_for(rank, True)):
            if source != target and shapes_agree(moved_shape(ref_shape, source, target), cand_shape):
                raise ShapeError(
                    f"{kind} {name!r}: reference shape {_fmt(ref_shape)} and candidate shape {_fmt(cand_shape)} differ "
                    f"by a channels transpose and nothing says which layout each side uses; pass "
                    f"--layout {flag_hint}{name}={target.value.lower()} (the candidate's layout), or --manifest "
                    "with the crossport conversion report"
                )


def _fmt(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
