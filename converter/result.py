"""The conversion report: what was converted, how, with which inputs, and how closely the result matches."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converter.parity.latency import Latency, format_latency
from converter.parity.report import REPORT_SCHEMA_VERSION, HopResult, format_hop
from converter.reporting import CRITERION, MODE, Report, criterion_text
from converter.serving import ServingInfo

# A timing key ending in this ran alongside other steps (in a worker process): shown, but not added to the total.
OVERLAPPED = " (overlapped)"


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int | None, ...]
    dtype: str
    source_layout: str
    target_layout: str


@dataclass(frozen=True)
class RouteAttempt:
    """One route ``--route auto`` considered: ``used``, ``failed verification``, ``rejected`` (it raised or
    produced something we refuse to publish) or ``skipped`` (ruled out before running)."""

    route: str
    outcome: str
    reason: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"route": self.route, "outcome": self.outcome, "reason": self.reason,
                "seconds": round(self.seconds, 3)}

    def describe(self) -> str:
        text = f"{self.route} {self.outcome}"
        return text + (f" ({self.reason})" if self.reason else "")


@dataclass(frozen=True)
class ConversionReport(Report):
    """``crossport convert``'s report (JSON kind ``crossport.conversion``); truthy when it passed."""

    source: str
    source_format: str
    target: str
    output: str | None
    route: tuple[str, ...]
    opset: int | None
    exporter: str | None
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    dynamic_batch: bool
    verified: bool
    passed: bool
    forced: bool
    hops: tuple[HopResult, ...]
    input_sets: tuple[dict, ...]
    atol: float
    rtol: float
    timings: dict[str, float]
    versions: dict[str, str]
    trainable_params: dict[str, int]
    notes: tuple[str, ...] = field(default_factory=tuple)
    error: str = ""
    scale: float = 0.0  # schema 1.2 (additive): the scale term of the criterion; 0 = element-wise (--elementwise)
    # Added in schema 1.1 (additive; v1 readers ignore them): the named route that produced the output and every
    # route tried on the way. Empty for directions with a single route.
    route_name: str = ""
    route_attempts: tuple[RouteAttempt, ...] = ()
    serving: ServingInfo | None = None  # SavedModel targets: the serving_default signature as TF Serving sees it
    # Additive: Keras layer name -> PyTorch module path (a .keras from the builder; names use "_" for ".")
    layer_paths: dict[str, str] = field(default_factory=dict)
    # Schema 1.3 (additive): measured latency of the source and the written artifact, and for a quantized TFLite
    # its mode, calibration, thresholds and each integer input/output's scale and zero point.
    latency: tuple[Latency, ...] = ()
    quantization: dict[str, Any] = field(default_factory=dict)

    @property
    def failed_hop(self) -> HopResult | None:
        """The first failed hop of a failed run (intermediate hops localize where it went wrong)."""
        if self.passed:
            return None
        return next((h for h in self.hops if not h.passed), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": REPORT_SCHEMA_VERSION,
            "kind": "crossport.conversion",
            "source": self.source, "source_format": self.source_format, "target": self.target,
            "output": self.output, "route": list(self.route), "opset": self.opset, "exporter": self.exporter,
            "inputs": [_tensor(t) for t in self.inputs], "outputs": [_tensor(t) for t in self.outputs],
            "dynamic_batch": self.dynamic_batch, "mode": MODE,
            "verified": self.verified, "passed": self.passed, "forced": self.forced,
            "failed_hop": self.failed_hop.name if self.failed_hop else None,
            "tolerance": {"atol": self.atol, "rtol": self.rtol, "scale": self.scale, "criterion": CRITERION},
            "input_sets": list(self.input_sets), "hops": [h.to_dict() for h in self.hops],
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()}, "versions": self.versions,
            "trainable_params": self.trainable_params, "notes": list(self.notes), "error": self.error,
            "schema_minor": 1, "route_name": self.route_name or None,
            "route_attempts": [a.to_dict() for a in self.route_attempts],
            "serving": self.serving.to_dict() if self.serving else None,
            "layer_paths": dict(self.layer_paths),
            "latency": [l.to_dict() for l in self.latency], "quantization": self.quantization or None,
        }

    def write(self, path: Path) -> None:
        Path(path).write_text(self.to_json() + "\n")

    def format_text(self) -> str:
        lines = [f"crossport: {self.source} ({self.source_format}) -> {self.target}"
                 + (f" at {self.output}" if self.output else "")]
        lines.append(f"  route: {' -> '.join(self.route)}" + (f" (opset {self.opset})" if self.opset else ""))
        if self.route_attempts:
            lines.append("  routes tried: " + "; ".join(a.describe() for a in self.route_attempts))
        for t in self.inputs:
            lines.append(f"  input  {t.name}: {list(t.shape)} {t.dtype}  layout {t.source_layout} -> {t.target_layout}")
        for t in self.outputs:
            lines.append(f"  output {t.name}: {list(t.shape)} {t.dtype}  layout {t.source_layout} -> {t.target_layout}")
        if self.trainable_params:
            lines.append("  trainable parameters: " + ", ".join(f"{k} {v:,}" for k, v in self.trainable_params.items()))
        if not self.verified:
            lines.append("  NOT VERIFIED: --no-verify was given; nothing was compared")
        else:
            sets = ", ".join(s["label"] for s in self.input_sets)
            lines.append(f"  verification (eval mode; inputs: {sets}; seed {self.input_sets[0]['seed'] if self.input_sets else '-'};"
                         f" {criterion_text(self.atol, self.rtol, self.scale)}):")
            for hop in self.hops:
                lines.extend(format_hop(hop))
        lines.extend(_format_quantization(self.quantization))
        lines.extend(format_latency(self.latency))
        for note in self.notes:
            lines.append(f"  note: {note}")
        if self.serving is not None:
            lines.extend(_serving_lines(self.serving))
        total = sum(v for k, v in self.timings.items() if not k.endswith(OVERLAPPED))
        lines.append("  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings.items()) + f" (total {total:.1f}s)")
        if self.verified and self.passed:
            verdict = "PASSED"
        elif self.verified:
            hop = self.failed_hop
            verdict = f"FAILED at hop {hop.name}" if hop else "FAILED"
        else:
            verdict = "UNVERIFIED"
        if self.forced and self.verified and not self.passed:
            verdict += " (written anyway because of --force)"
        elif self.verified and not self.passed:
            verdict += " (nothing was written)"
        lines.append(f"  result: {verdict}")
        return "\n".join(lines)


def _serving_lines(info: ServingInfo) -> list[str]:
    """The signature as ``saved_model_cli show`` prints it, then how TF Serving loads and is called."""
    lines = [f"  serving signature '{info.signature}' (tags {', '.join(info.tags)}; saved_model_cli show):"]
    lines += [f"    {line}" for line in info.show_text()]
    if info.base_path is not None:
        lines.append(f"  TF Serving: tensorflow_model_server --rest_api_port=8501 --model_name=MODEL "
                     f"--model_base_path={info.base_path}  (version {info.version})")
    else:
        lines.append("  TF Serving: pass --model-version N to write the versioned layout DIR/N/ that "
                     "--model_base_path=DIR expects")
    lines.append(f"  REST: POST /v1/models/MODEL:predict {info.rest_body(abbreviate=32)}")
    return lines


def _format_quantization(q: dict[str, Any]) -> list[str]:
    if not q:
        return []
    lines = [f"  quantization: {q['mode']}" + (f"; calibration: {q['calibration']}" if q.get("calibration") else "")
             + f"; thresholds: {q['thresholds_text']}"]
    for io in q.get("io", []):
        params = f" scale {io['scale']:.6g} zero point {io['zero_point']}" if io.get("scale") is not None else ""
        lines.append(f"    {io['kind']} {io['name']}: {io['dtype']}{params}")
    for o in q.get("outputs", []):
        f, qq = o.get("float"), o["quantized"]
        cost = (f"float cosine {f['cosine']:.5f} / SNR {f['snr_db']:.1f} dB -> " if f else "")
        lines.append(f"    cost on {o['name']}: {cost}quantized cosine {qq['cosine']:.5f} / SNR {qq['snr_db']:.1f} dB; "
                     f"decided by: {o['decided_by']}")
    return lines


def _tensor(t: TensorInfo) -> dict[str, Any]:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype,
            "source_layout": t.source_layout, "target_layout": t.target_layout}

