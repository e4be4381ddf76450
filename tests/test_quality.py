"""The quantization metrics on arrays whose answers are known by construction (no frameworks)."""
from __future__ import annotations

import numpy as np
import pytest

from converter.parity.quality import (DEFAULT_THRESHOLDS, Thresholds, output_quality, snr_db, thresholds_for,
                                      topk_agreement)


def test_snr_of_a_known_noise_power() -> None:
    rng = np.random.default_rng(0)
    ref = rng.standard_normal(100_000)
    noise = rng.standard_normal(100_000) * 0.1  # 1 % of the power: 20 dB
    assert snr_db(ref + noise, ref) == pytest.approx(20.0, abs=0.2)
    assert snr_db(ref, ref) == float("inf")


def test_topk_agreement_counts_rows() -> None:
    ref = np.array([[0, 1, 2, 3, 4, 5, 6.0]] * 4)
    cand = ref.copy()
    cand[1] = [9, 1, 2, 3, 4, 5, 6]  # arg-max moves to class 0; class 6 is still second
    cand[2] = [6, 5, 4, 3, 2, 1, 0]  # reversed: class 6 is last
    assert topk_agreement(cand, ref, 1) == 0.5
    assert topk_agreement(cand, ref, 5) == 0.75


def test_the_failing_metric_decides_and_is_named() -> None:
    ref = np.tile(np.arange(10.0), (20, 1))
    cand = ref.copy()
    cand[:4, 0] = 9.5  # 4 of 20 rows change class: 80 % top-1 agreement, cosine still high
    q = output_quality("logits", [cand], [ref], Thresholds(min_cosine=0.5, min_top1=0.9))
    assert not q.passed and q.top1 == pytest.approx(0.8) and q.rows == 20
    assert q.decided_by == "top-1 agreement 80% < 90%"
    ok = output_quality("logits", [ref], [ref], Thresholds(min_cosine=0.5, min_top1=0.9))
    assert ok.passed and ok.decided_by.startswith("passed")


def test_not_classifier_like_is_judged_without_top1() -> None:
    ref = np.random.default_rng(1).standard_normal((3, 4, 5))
    q = output_quality("seq", [ref * 1.001], [ref], DEFAULT_THRESHOLDS["int8"])
    assert q.top1 is None and q.passed and "top-1 not judged" in q.decided_by


def test_max_error_in_output_scale_units() -> None:
    ref = np.linspace(0, 255, 256).reshape(1, 256)  # range 255 -> scale 1.0
    cand = ref.copy()
    cand[0, 3] += 3.0
    q = output_quality("y", [cand], [ref], Thresholds())
    assert q.output_scale == pytest.approx(1.0) and q.max_error_in_scale == pytest.approx(3.0)
    q8 = output_quality("y", [cand], [ref], Thresholds(), output_scale=0.5)
    assert q8.max_error_in_scale == pytest.approx(6.0) and q8.scale_source == "tflite output quantization"


def test_overrides_replace_only_what_is_given() -> None:
    t = thresholds_for("int8", min_top1=0.5)
    assert t.min_top1 == 0.5 and t.min_cosine == DEFAULT_THRESHOLDS["int8"].min_cosine
