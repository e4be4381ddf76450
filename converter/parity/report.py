"""Parity results: one hop (reference runner vs candidate runner over several input sets) and its summary."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from converter.errors import described
from converter.layout import Layout, to_layout
from converter.parity.compare import OutputComparison, Tolerance, compare_arrays, elementwise_view
from converter.parity.inputs import InputSet
from converter.parity.quality import OutputQuality, Thresholds, output_quality
from converter.parity.runners import Runner

REPORT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class HopResult:
    """Reference vs candidate on every input set; per output, the worst comparison over the sets."""

    reference: str
    candidate: str
    passed: bool
    outputs: tuple[OutputComparison, ...]
    per_set: tuple[tuple[str, bool, float], ...]  # (input set label, passed, max abs error)
    compared_layout: tuple[str, ...]
    error: str = ""
    # "end-to-end" hops (source -> delivered artifact) decide the verdict; "intermediate" hops (source -> ONNX,
    # ONNX -> target) localize a failure. An intermediate runtime may be the one that is off (onnxruntime's
    # LayerNormalization on ill-conditioned inputs, a kernel it refuses), which must not fail a faithful result.
    role: str = "end-to-end"
    # A quantized artifact is judged by ``converter.parity.quality`` (cosine, SNR, top-1 agreement), not by the
    # element-wise tolerance: then ``quality`` holds each output's metrics and ``judged_by`` the thresholds.
    quality: tuple[OutputQuality, ...] = ()
    judged_by: str = ""

    @property
    def name(self) -> str:
        return f"{self.reference} -> {self.candidate}"

    @property
    def decisive(self) -> bool:
        return self.role == "end-to-end"

    def to_dict(self) -> dict[str, Any]:
        return {
            "hop": self.name, "reference": self.reference, "candidate": self.candidate, "passed": self.passed,
            "role": self.role,
            "compared_layout": list(self.compared_layout), "error": self.error,
            "outputs": [o.to_dict() for o in self.outputs],
            "input_sets": [{"label": l, "passed": p, "max_abs_error": e} for l, p, e in self.per_set],
            "quality": [q.to_dict() for q in self.quality], "judged_by": self.judged_by or "tolerance",
        }


def run_hop(
    reference: Runner,
    candidate: Runner,
    input_sets: Sequence[InputSet],
    input_layouts: Sequence[Layout],
    output_names: Sequence[str],
    tolerances: dict[str, Tolerance] | Tolerance,
    cache: dict[tuple[int, int], Any] | None = None,
    quality: Thresholds | None = None,
    output_scales: Sequence[float | None] = (),
) -> HopResult:
    """Feed each input set (given in ``input_layouts``) to both runners; compare in the reference's layout.

    ``cache`` (one dict per verification, the runners kept alive meanwhile) remembers each runner's outputs per
    input set: a route's hops share their models (source -> ONNX, ONNX -> target, source -> target), so each
    model runs once per input set instead of twice.

    ``quality``: also compute the quantization metrics of every output pooled over the sets, and let them (not the
    element-wise tolerance) decide the hop; ``output_scales`` are the artifact's output quantization scales."""
    worst: dict[int, OutputComparison] = {}
    pooled: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
    per_set = []
    compared = tuple(l.value for l in reference.output_layouts)
    for s in input_sets:
        ref_feeds = [to_layout(a, src, dst) for a, src, dst in zip(s.arrays, input_layouts, reference.input_layouts)]
        cand_feeds = [to_layout(a, src, dst) for a, src, dst in zip(s.arrays, input_layouts, candidate.input_layouts)]
        try:
            ref_out = _run(reference, ref_feeds, s, cache)
        except Exception as err:  # noqa: BLE001 - a runner failure is a verification failure, reported as such
            return _failed(reference, candidate, f"{reference.name} failed on {s.label}: {described(err, 300)}", compared)
        try:
            cand_out = _run(candidate, cand_feeds, s, cache)
        except Exception as err:  # noqa: BLE001
            return _failed(reference, candidate, f"{candidate.name} failed on {s.label}: {described(err, 300)}", compared)
        if len(ref_out) != len(cand_out):
            return _failed(reference, candidate,
                           f"{candidate.name} returned {len(cand_out)} outputs, {reference.name} {len(ref_out)}",
                           compared)
        set_ok, set_err = True, 0.0
        for k, (r, c) in enumerate(zip(ref_out, cand_out)):
            c = to_layout(np.asarray(c), candidate.output_layouts[k], reference.output_layouts[k])
            name = output_names[k] if k < len(output_names) else f"output{k}"
            tol = tolerances.get(name, Tolerance()) if isinstance(tolerances, dict) else tolerances
            cmp = compare_arrays(name, c, np.asarray(r), tol)
            if c.shape == np.shape(r):
                pooled.setdefault(k, ([], []))[0].append(c)
                pooled[k][1].append(np.asarray(r))
            set_ok &= cmp.passed
            set_err = max(set_err, cmp.max_abs_error)
            prev = worst.get(k)
            if prev is None or (not cmp.passed and prev.passed) or (cmp.passed == prev.passed
                                                                     and cmp.max_abs_error > prev.max_abs_error):
                worst[k] = _merge(cmp, prev)
            else:
                worst[k] = _merge(prev, cmp)
        per_set.append((s.label, bool(set_ok), float(set_err)))
    outputs = tuple(worst[k] for k in sorted(worst))
    if quality is None:
        return HopResult(reference.name, candidate.name, all(o.passed for o in outputs), outputs, tuple(per_set),
                         compared)
    metrics = tuple(output_quality(o.name, *pooled[k], quality, output_scales[k] if k < len(output_scales) else None)
                    for k, o in enumerate(outputs) if k in pooled)
    passed = len(metrics) == len(outputs) and all(q.passed for q in metrics)
    return HopResult(reference.name, candidate.name, passed, outputs, tuple(per_set), compared,
                     quality=metrics, judged_by=quality.describe())


def _run(runner: Runner, feeds: list[np.ndarray], input_set: InputSet, cache: dict[tuple[int, int], Any] | None) -> Any:
    """Keyed by the input set object, not its label: a static-batch set may share a label with a dynamic one."""
    if cache is None:
        return runner.run(feeds)
    key = (id(runner), id(input_set))
    if key not in cache:
        cache[key] = [np.asarray(o) for o in runner.run(feeds)]
    return cache[key]


def _merge(primary: OutputComparison, other: OutputComparison | None) -> OutputComparison:
    """Keep the worst case's details but accumulate mismatch counts and the tolerance needed over all sets."""
    if other is None:
        return primary
    from dataclasses import replace

    return replace(
        primary,
        mismatches=primary.mismatches + other.mismatches,
        total=primary.total + other.total,
        atol_needed=max(primary.atol_needed, other.atol_needed),
        max_rel_error=max(primary.max_rel_error, other.max_rel_error),
        cosine_similarity=min(primary.cosine_similarity, other.cosine_similarity),
        passed=primary.passed and other.passed,
        elementwise_passed=primary.elementwise_passed and other.elementwise_passed,
        elementwise_mismatches=primary.elementwise_mismatches + other.elementwise_mismatches,
        reference_rms=max(primary.reference_rms, other.reference_rms),
    )


def verdict(hops: Sequence[HopResult]) -> bool:
    """Passed when there is at least one end-to-end hop and every end-to-end hop passed."""
    decisive = [h for h in hops if h.decisive]
    return bool(decisive) and all(h.passed for h in decisive)


def as_intermediate(hop: HopResult) -> HopResult:
    from dataclasses import replace

    return replace(hop, role="intermediate")


def _failed(reference: Runner, candidate: Runner, message: str, compared: tuple[str, ...]) -> HopResult:
    return HopResult(reference.name, candidate.name, False, (), (), compared, error=message)



def format_hop(hop: HopResult) -> list[str]:
    """Human-readable lines for one hop."""
    mark = "PASS" if hop.passed else ("FAIL" if hop.decisive else "WARN")
    lines = [f"  [{mark}] {hop.name}" + ("" if hop.decisive else " (intermediate)")]
    if hop.error:
        lines.append(f"         error: {hop.error}")
    if hop.quality:
        lines.append(f"         judged by quantization metrics ({hop.judged_by}); element-wise view for reference:")
        for q in hop.quality:
            lines.append(f"         {q.describe()}")
            lines.append(f"           -> {'PASS' if q.passed else 'FAIL'}: {q.decided_by}")
    for o in hop.outputs:
        lines.append(
            f"         {o.name:<14} shape {str(list(o.shape)):<18} max abs {o.max_abs_error:.2e}  "
            f"max rel {o.max_rel_error:.2e}  mismatches {o.mismatches}/{o.total}  cos {o.cosine_similarity:.6f}  "
            f"(atol {o.atol:g}, rtol {o.rtol:g}; atol needed {o.atol_needed:.1e})"
        )
        if elementwise_view(o):
            lines.append(f"         {elementwise_view(o)}")
        if o.note:
            lines.append(f"         note: {o.note}")
        if not o.passed and o.worst_index and not hop.quality:
            lines.append(f"         worst element at index {list(o.worst_index)}")
    return lines
