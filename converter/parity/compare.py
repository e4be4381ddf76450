"""Compare two arrays the way numpy/torch.testing do, and say how far apart they are.

An element passes when ``|a - b| <= atol + rtol * |b| + scale * rms(b)`` with ``b`` the reference and
``rms(b) = sqrt(mean(b**2))`` over its finite elements. The last term makes the default verdict right at every
output scale: float32 rounding in a network whose outputs are ~1e4 (physical units, regression targets, timm
repvgg_a2) leaves errors of ~1e-3 on elements near zero, which a fixed ``atol`` of 1e-4 would call a mismatch.
``scale`` = 1e-5 of the output's RMS is far below what real conversion bugs cause (a BatchNorm with the wrong
epsilon, a swapped channel, a 1e-3-relative weight error all move outputs by >= 1e-4 of their RMS: see
tests/test_compare_scale.py), and for O(1) outputs it adds only 1e-5 to ``atol``. ``scale=0`` is the plain
element-wise criterion for users who ask for it; both verdicts are kept in the result.

Besides pass/fail we keep the numbers a user needs to judge a failure: max abs/rel error, mismatch count, cosine
similarity, the worst index, and the smallest atol that would have passed at the given rtol (Polygraphy-style,
element-wise).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-4
DEFAULT_SCALE = 1e-5


@dataclass(frozen=True)
class Tolerance:
    """``scale``: tolerance relative to the reference output's RMS (see the module docstring); 0 = element-wise."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    scale: float = DEFAULT_SCALE


@dataclass(frozen=True)
class OutputComparison:
    """The verdict for one output tensor."""

    name: str
    shape: tuple[int, ...]
    reference_shape: tuple[int, ...]
    passed: bool
    max_abs_error: float
    max_rel_error: float
    mismatches: int
    total: int
    cosine_similarity: float
    worst_index: tuple[int, ...]
    reference_scale: float
    atol: float
    rtol: float
    atol_needed: float
    note: str = ""
    reference_rms: float = 0.0  # RMS of the reference's finite elements
    scale: float = 0.0  # the Tolerance's scale: the verdict allows scale * reference_rms more than atol
    elementwise_passed: bool = True  # the verdict of |a - b| <= atol + rtol * |b| alone
    elementwise_mismatches: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["reference_shape"] = list(self.reference_shape)
        d["worst_index"] = list(self.worst_index)
        return d


def _finite_float(x: float) -> float:
    return float(x) if np.isfinite(x) else float("inf")


def compare_arrays(name: str, candidate: np.ndarray, reference: np.ndarray, tol: Tolerance) -> OutputComparison:
    """Compare ``candidate`` against ``reference``; a shape mismatch is a failure, never reshaped."""
    cand = np.asarray(candidate)
    ref = np.asarray(reference)
    if cand.shape != ref.shape:
        return OutputComparison(
            name=name, shape=tuple(cand.shape), reference_shape=tuple(ref.shape), passed=False,
            max_abs_error=float("inf"), max_rel_error=float("inf"), mismatches=int(max(ref.size, cand.size)),
            total=int(ref.size), cosine_similarity=float("nan"), worst_index=(), reference_scale=0.0,
            atol=tol.atol, rtol=tol.rtol, atol_needed=float("inf"),
            note=f"shape mismatch: candidate {tuple(cand.shape)} vs reference {tuple(ref.shape)}",
            scale=tol.scale, elementwise_passed=False, elementwise_mismatches=int(max(ref.size, cand.size)),
        )
    if ref.dtype == bool or cand.dtype == bool or np.issubdtype(ref.dtype, np.integer):
        a = cand.astype(np.float64)
        b = ref.astype(np.float64)
    else:
        a = cand.astype(np.float64)
        b = ref.astype(np.float64)
    if a.size == 0:
        return OutputComparison(name, tuple(a.shape), tuple(b.shape), True, 0.0, 0.0, 0, 0, 1.0, (), 0.0,
                                tol.atol, tol.rtol, 0.0, "empty tensor", scale=tol.scale)
    nan_mismatch = np.isnan(a) != np.isnan(b)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a - b)
        diff = np.where(both_nan, 0.0, diff)
        diff = np.where(nan_mismatch, np.inf, diff)
        # Equal infinities are a match, not inf - inf = nan.
        same_inf = np.isinf(a) & np.isinf(b) & (a == b)
        diff = np.where(same_inf, 0.0, diff)
        abs_b = np.abs(b)
        elementwise_bound = tol.atol + tol.rtol * np.where(np.isfinite(abs_b), abs_b, 0.0)
        finite = b[np.isfinite(b)]
        rms = float(np.sqrt(np.mean(np.square(finite)))) if finite.size else 0.0
        elementwise = diff > elementwise_bound
        mismatch = diff > elementwise_bound + tol.scale * rms
        rel = diff / np.maximum(abs_b, np.finfo(np.float64).tiny)
        rel = np.where(diff == 0, 0.0, rel)
        # The atol that would have passed with this rtol: max over elements of diff - rtol*|b|.
        needed = float(np.max(diff - tol.rtol * np.where(np.isfinite(abs_b), abs_b, 0.0)))
    worst_flat = int(np.argmax(diff))
    af = np.where(np.isfinite(a), a, 0.0).ravel()
    bf = np.where(np.isfinite(b), b, 0.0).ravel()
    na, nb = float(np.linalg.norm(af)), float(np.linalg.norm(bf))
    if na == 0.0 and nb == 0.0:
        cosine = 1.0
    elif na == 0.0 or nb == 0.0:
        cosine = 0.0
    else:
        cosine = float(np.dot(af, bf) / (na * nb))
    n_bad = int(np.count_nonzero(mismatch))
    finite_b = abs_b[np.isfinite(abs_b)]
    return OutputComparison(
        name=name,
        shape=tuple(a.shape),
        reference_shape=tuple(b.shape),
        passed=n_bad == 0,
        max_abs_error=_finite_float(float(np.max(diff))),
        max_rel_error=_finite_float(float(np.max(rel))),
        mismatches=n_bad,
        total=int(a.size),
        cosine_similarity=cosine,
        worst_index=tuple(int(i) for i in np.unravel_index(worst_flat, a.shape)),
        reference_scale=float(np.max(finite_b)) if finite_b.size else 0.0,
        atol=tol.atol,
        rtol=tol.rtol,
        atol_needed=max(0.0, _finite_float(needed)),
        note="non-finite values differ" if bool(np.any(nan_mismatch)) else "",
        reference_rms=rms,
        scale=tol.scale,
        elementwise_passed=not bool(np.any(elementwise)),
        elementwise_mismatches=int(np.count_nonzero(elementwise)),
    )


def elementwise_view(o: OutputComparison) -> str:
    """The element-wise verdict beside the scale-aware one, when they differ (reports show both views)."""
    if not o.scale or o.elementwise_passed:
        return ""
    return (f"element-wise alone (atol + rtol*|b|, without {o.scale:g}*rms(b), rms {o.reference_rms:.3g}): "
            f"{o.elementwise_mismatches}/{o.total} mismatches")
