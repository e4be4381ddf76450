"""How close a quantized model is to its float source, in metrics that mean something after quantization.

Element-wise tolerances answer "is this the same function"; a quantized model is deliberately not. What a user
needs is how much signal survived and whether decisions survive:

- **cosine similarity** of the whole output (flattened over every input set): 1.0 = same direction;
- **SNR in dB**: ``10 * log10(sum(ref^2) / sum((cand - ref)^2))`` -- 20 dB means the error carries 1 % of the
  signal's power, 40 dB 0.01 %;
- **max abs error in units of the output scale**: the scale of the output's int8 quantization when the file has one
  (``int8-full``), else the step an int8 tensor would have over the reference's range (``(max - min) / 255``), so
  "3.0" reads as "off by three quantization steps";
- **top-1 / top-5 agreement** for classifier-like outputs (rank 2, at least 2 classes): the share of rows whose
  reference arg-max is the candidate's arg-max (top-1) or among its five largest (top-5).

A mode's ``Thresholds`` say what passes; the first threshold that fails decides, and the report names it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

MODES = ("fp16", "dynamic", "int8", "int8-full")


@dataclass(frozen=True)
class Thresholds:
    """Minimums that pass; ``None`` = not judged. ``min_top1`` is a fraction (0.9 = 90 %)."""

    min_cosine: float | None = None
    min_snr_db: float | None = None
    min_top1: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"min_cosine": self.min_cosine, "min_snr_db": self.min_snr_db, "min_top1": self.min_top1}

    def describe(self) -> str:
        parts = []
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        if self.min_snr_db is not None:
            parts.append(f"SNR >= {self.min_snr_db:g} dB")
        if self.min_top1 is not None:
            parts.append(f"top-1 agreement >= {self.min_top1:.0%}")
        return ", ".join(parts) or "no thresholds"


# Measured with the seeded inputs on the fixtures' CNN, transformer block and LSTM (tests/test_quantize.py): fp16
# cosine 1.00000 and SNR 58-79 dB, dynamic-range cosine >= 0.99995 and 40-141 dB, int8 cosine 0.9993-0.9999 and
# 28-36 dB with top-1 agreement 100 %; the zoo's ResNet-18 / MobileNetV3-small int8 figures are in the README. The
# defaults leave headroom under those so that a faithful conversion passes, while a calibration off by orders of
# magnitude (cosine 0.56 or 0, top-1 0 %) fails.
DEFAULT_THRESHOLDS: dict[str, Thresholds] = {
    "fp16": Thresholds(min_cosine=0.9999, min_snr_db=40.0, min_top1=0.99),
    "dynamic": Thresholds(min_cosine=0.995, min_snr_db=20.0, min_top1=0.95),
    "int8": Thresholds(min_cosine=0.99, min_snr_db=None, min_top1=0.90),
    "int8-full": Thresholds(min_cosine=0.99, min_snr_db=None, min_top1=0.90),
}


def thresholds_for(mode: str, min_cosine: float | None = None, min_snr_db: float | None = None,
                   min_top1: float | None = None) -> Thresholds:
    """The mode's defaults with any user overrides (``--min-cosine`` etc.) applied."""
    base = DEFAULT_THRESHOLDS[mode]
    if min_cosine is not None:
        base = replace(base, min_cosine=min_cosine)
    if min_snr_db is not None:
        base = replace(base, min_snr_db=min_snr_db)
    if min_top1 is not None:
        base = replace(base, min_top1=min_top1)
    return base


@dataclass(frozen=True)
class OutputQuality:
    """One output's metrics over every input set, and the verdict under ``thresholds``."""

    name: str
    rows: int
    cosine: float
    snr_db: float
    max_abs_error: float
    output_scale: float
    scale_source: str  # "tflite output quantization" or "reference range / 255"
    top1: float | None  # None: not classifier-like
    top5: float | None
    passed: bool
    decided_by: str  # the failing metric, or why it passed

    @property
    def max_error_in_scale(self) -> float:
        return self.max_abs_error / self.output_scale if self.output_scale > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rows": self.rows, "cosine": self.cosine, "snr_db": self.snr_db,
                "max_abs_error": self.max_abs_error, "output_scale": self.output_scale,
                "scale_source": self.scale_source, "max_abs_error_in_scale_units": self.max_error_in_scale,
                "top1_agreement": self.top1, "top5_agreement": self.top5, "passed": self.passed,
                "decided_by": self.decided_by}

    def describe(self) -> str:
        text = (f"{self.name}: cosine {self.cosine:.5f}, SNR {self.snr_db:.1f} dB, max abs error "
                f"{self.max_error_in_scale:.2f} x output scale ({self.output_scale:.3g}, {self.scale_source})")
        if self.top1 is not None:
            text += f", top-1 agreement {self.top1:.0%} of {self.rows} rows"
        if self.top5 is not None:
            text += f", top-5 {self.top5:.0%}"
        return text


def snr_db(candidate: np.ndarray, reference: np.ndarray) -> float:
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(candidate.astype(np.float64) - reference)))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))


def cosine(candidate: np.ndarray, reference: np.ndarray) -> float:
    a, b = candidate.astype(np.float64).ravel(), reference.astype(np.float64).ravel()
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def classifier_like(reference: np.ndarray) -> bool:
    """Rank 2 (batch x classes) with at least two classes: arg-max agreement means something."""
    return reference.ndim == 2 and reference.shape[1] >= 2


def topk_agreement(candidate: np.ndarray, reference: np.ndarray, k: int) -> float:
    """Share of rows whose reference arg-max is among the candidate's ``k`` largest."""
    ref_top = np.argmax(reference, axis=1)
    cand_top = np.argsort(-candidate, axis=1, kind="stable")[:, :k]
    return float(np.mean([r in c for r, c in zip(ref_top, cand_top)]))


def output_quality(name: str, candidates: Sequence[np.ndarray], references: Sequence[np.ndarray],
                   thresholds: Thresholds, output_scale: float | None = None) -> OutputQuality:
    """Metrics of one output pooled over the input sets (rows of every set together)."""
    cand = np.concatenate([np.asarray(c, np.float64).reshape(c.shape[0], -1) if np.ndim(c) else
                           np.asarray(c, np.float64).reshape(1, 1) for c in candidates])
    ref = np.concatenate([np.asarray(r, np.float64).reshape(r.shape[0], -1) if np.ndim(r) else
                          np.asarray(r, np.float64).reshape(1, 1) for r in references])
    classifier = all(classifier_like(np.asarray(r)) for r in references)
    cos, snr = cosine(cand, ref), snr_db(cand, ref)
    max_abs = float(np.max(np.abs(cand - ref))) if cand.size else 0.0
    if output_scale:
        scale, scale_source = float(output_scale), "tflite output quantization"
    else:
        span = float(np.max(ref) - np.min(ref)) if ref.size else 0.0
        scale, scale_source = span / 255.0, "reference range / 255"
    top1 = topk_agreement(cand, ref, 1) if classifier else None
    top5 = topk_agreement(cand, ref, 5) if classifier and ref.shape[1] > 5 else None
    failed = []
    if thresholds.min_cosine is not None and not cos >= thresholds.min_cosine:
        failed.append(f"cosine {cos:.5f} < {thresholds.min_cosine:g}")
    if thresholds.min_top1 is not None and top1 is not None and not top1 >= thresholds.min_top1:
        failed.append(f"top-1 agreement {top1:.0%} < {thresholds.min_top1:.0%}")
    if thresholds.min_snr_db is not None and not snr >= thresholds.min_snr_db:
        failed.append(f"SNR {snr:.1f} dB < {thresholds.min_snr_db:g} dB")
    if failed:
        decided = "; ".join(failed)
    else:
        decided = f"passed {thresholds.describe()}" if top1 is not None or thresholds.min_top1 is None else \
            f"passed {replace(thresholds, min_top1=None).describe()} (not classifier-like: top-1 not judged)"
    return OutputQuality(name, int(ref.shape[0]), cos, snr, max_abs, scale, scale_source, top1, top5,
                         not failed, decided)
