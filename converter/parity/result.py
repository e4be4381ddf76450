"""The verification report: which models, which inputs in which layout, the error per output, and where it broke.

JSON schema ``crossport.verify`` version 1 (documented in README.md, "Verify parity"); ``write`` picks JSON or HTML by suffix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converter.parity.compare import Tolerance, elementwise_view
from converter.parity.report import HopResult
from converter.reporting import CRITERION, MODE, Report, criterion_text

VERIFY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str
    kind: str
    runner: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "format": self.format, "kind": self.kind, "runner": self.runner}


@dataclass(frozen=True)
class TensorLayout:
    """One input/output: its shape in the reference's layout and the layout each side was fed/read in."""

    name: str
    shape: tuple[int, ...]
    dtype: str
    reference_layout: str
    candidate_layout: str
    layout_from: str  # "--layout", "manifest", "same", "golden"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "reference_layout": self.reference_layout, "candidate_layout": self.candidate_layout,
                "layout_from": self.layout_from}


@dataclass(frozen=True)
class VerifyReport(Report):
    """``crossport verify``'s report (JSON kind ``crossport.verify``); truthy when the outputs matched."""

    reference: ModelInfo
    candidate: ModelInfo
    passed: bool
    hop: HopResult
    inputs: tuple[TensorLayout, ...]
    outputs: tuple[TensorLayout, ...]
    input_sets: tuple[dict, ...]
    tolerance: Tolerance
    per_output_tolerance: dict[str, tuple[float, float]]
    layers: Any = None  # localize.LayerProfile
    histograms: tuple[dict, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    manifest: str | None = None
    route: tuple[str, ...] = ()
    opset: int | None = None
    dynamic_batch: bool = False
    golden: str | None = None
    golden_changes: tuple[str, ...] = ()

    @property
    def first_divergent(self) -> Any:
        return self.layers.first_divergent if self.layers is not None else None

    def to_dict(self) -> dict[str, Any]:
        first = self.first_divergent
        return {
            "schema_version": VERIFY_SCHEMA_VERSION,
            "kind": "crossport.verify",
            "passed": self.passed,
            "reference": self.reference.to_dict(),
            "candidate": self.candidate.to_dict(),
            "golden": {"dir": self.golden, "changes": list(self.golden_changes)} if self.golden else None,
            "mode": MODE,
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol, "scale": self.tolerance.scale,
                          "criterion": CRITERION,
                          "per_output": {k: {"atol": a, "rtol": r} for k, (a, r) in self.per_output_tolerance.items()}},
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "dynamic_batch": self.dynamic_batch,
            "input_sets": list(self.input_sets),
            "comparison": self.hop.to_dict(),
            "first_divergent_layer": first.to_dict() if first is not None else None,
            "layers": self.layers.to_dict() if self.layers is not None else None,
            "error_histograms": list(self.histograms),
            "route": list(self.route), "opset": self.opset, "manifest": self.manifest,
            "versions": self.versions, "command": self.command,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "notes": list(self.notes),
        }

    def write(self, path: str | Path) -> Path:
        """``.html``/``.htm``: the self-contained HTML report; anything else: JSON."""
        from converter.errors import OutputError

        path = Path(path)
        if path.suffix.lower() in (".html", ".htm"):
            from converter.parity.html import render_html

            text = render_html(self)
        else:
            text = self.to_json() + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as err:
            raise OutputError(f"{path}: cannot write the report ({err.strerror})") from err
        return path

    def table(self) -> list[str]:
        """The per-output table, one row per output (worst over all input sets)."""
        rows = [f"  {'output':<16}{'shape':<18}{'max abs':>10}{'max rel':>10}{'mismatch':>14}{'cosine':>11}"
                f"{'atol needed':>13}  result"]
        for o in self.hop.outputs:
            rows.append(f"  {o.name[:15]:<16}{str(list(o.shape))[:17]:<18}{o.max_abs_error:>10.2e}"
                        f"{o.max_rel_error:>10.2e}{f'{o.mismatches}/{o.total}':>14}{o.cosine_similarity:>11.6f}"
                        f"{o.atol_needed:>13.1e}  {'ok' if o.passed else 'FAIL'}")
            if elementwise_view(o):
                rows.append(f"    {elementwise_view(o)}")
            if o.note:
                rows.append(f"    note: {o.note}")
            if not o.passed and o.worst_index:
                rows.append(f"    worst element at index {list(o.worst_index)} "
                            f"(tolerance atol {o.atol:g}, rtol {o.rtol:g})")
        return rows

    def format_text(self) -> str:
        ref = "golden " + str(self.golden) if self.golden else f"{self.reference.path} ({self.reference.format})"
        lines = [f"crossport verify: {self.candidate.path} ({self.candidate.format}) against {ref}"]
        for t in self.inputs:
            lines.append(f"  input  {t.name}: {list(t.shape)} {t.dtype}  layout {t.reference_layout} -> "
                         f"{t.candidate_layout} ({t.layout_from})")
        sets = ", ".join(s["label"] for s in self.input_sets)
        seed = self.input_sets[0]["seed"] if self.input_sets else "-"
        lines.append(f"  inputs: {sets} (seed {seed}); {MODE}")
        lines.append(f"  tolerance: {criterion_text(self.tolerance.atol, self.tolerance.rtol, self.tolerance.scale)}"
                     + "".join(f"; {k}: {a:g}, {r:g}" for k, (a, r) in self.per_output_tolerance.items()))
        if self.hop.error:
            lines.append(f"  error: {self.hop.error}")
        lines.extend(self.table())
        first = self.first_divergent
        if first is not None:
            lines.append(f"  first divergent layer: {first.name} (layer {first.index + 1} of "
                         f"{self.layers.reference_layers}; shape {list(first.shape)}; max abs {first.max_abs_error:.2e},"
                         f" max rel {first.max_rel_error:.2e}; atol needed {first.atol_needed:.1e})")
        elif self.layers is not None and self.layers.note:
            lines.append(f"  layers: {self.layers.note}")
        elif self.layers is not None:
            lines.append(f"  layers: {len(self.layers.layers)} compared, all within tolerance")
        if self.layers is not None and self.layers.layers and (first is None or len(self.layers.layers) <= 60):
            lines.append("  per-layer max abs error:")
            for l in self.layers.layers:
                mark = "" if l.passed else "  <-- exceeds tolerance"
                lines.append(f"    {l.name:<40} {l.max_abs_error:.2e}{mark}" + (f"  ({l.note})" if l.note else ""))
        for change in self.golden_changes:
            lines.append(f"  changed since the golden files: {change}")
        for note in self.notes:
            lines.append(f"  note: {note}")
        lines.append(f"  result: {'PASSED' if self.passed else 'FAILED'}")
        return "\n".join(lines)

