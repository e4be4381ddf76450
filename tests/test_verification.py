"""Verification must catch a bad conversion: nothing published, exit 1, the failing hop named."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converter import ConvertOptions, convert
from converter.parity.compare import Tolerance, compare_arrays


@pytest.fixture
def corrupt_saved_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    """Perturb one kernel element of the Keras model right before it is written."""
    from converter.adapters import keras_export

    original = keras_export.save_keras

    def corrupted(model, path):
        layer = model.get_layer("conv1")
        kernel, bias = layer.get_weights()
        kernel[0, 0, 0, 0] += 0.5
        layer.set_weights([kernel, bias])
        original(model, path)

    monkeypatch.setattr(keras_export, "save_keras", corrupted)


def test_corrupted_weight_fails_and_publishes_nothing(saved_sources, tmp_path: Path, corrupt_saved_weight) -> None:
    out = tmp_path / "bad.keras"
    result = convert(str(saved_sources["pt2"]), ConvertOptions(output=str(out)))
    assert not result.passed
    assert result.report.failed_hop.name == "onnxruntime -> keras (.keras file)"
    assert result.report.hops[0].passed  # the export itself was fine
    assert not out.exists() and result.artifact is None
    assert not [p for p in tmp_path.iterdir()]  # no temp dirs left either
    text = result.report.format_text()
    assert "FAILED at hop onnxruntime -> keras" in text and "nothing was written" in text


def test_corrupted_weight_cli_exit_1_and_force(saved_sources, tmp_path: Path, corrupt_saved_weight) -> None:
    from converter.cli import main

    out = tmp_path / "bad.keras"
    r = CliRunner().invoke(main, ["convert", str(saved_sources["pt2"]), "-o", str(out)])
    assert r.exit_code == 1 and not out.exists()
    r = CliRunner().invoke(main, ["convert", str(saved_sources["pt2"]), "-o", str(out), "--force"])
    assert r.exit_code == 1 and out.exists()
    assert "written anyway because of --force" in r.output


def test_wrong_batchnorm_epsilon_fails_default_tolerance(saved_sources, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Keras' default BatchNorm epsilon (1e-3) instead of PyTorch's 1e-5 must not pass."""
    import keras

    original = keras.layers.BatchNormalization.__init__

    def keras_default_eps(self, *args, **kwargs):
        kwargs["epsilon"] = 1e-3
        original(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.BatchNormalization, "__init__", keras_default_eps)
    result = convert(str(saved_sources["pt2"]), ConvertOptions(output=str(tmp_path / "eps.keras")))
    assert not result.passed
    worst = result.report.failed_hop.outputs[0]
    assert worst.mismatches > 0 and worst.max_abs_error > 1e-3


def test_compare_semantics() -> None:
    ref = np.array([1.0, 100.0, 0.0, np.nan], dtype=np.float32)
    tol = Tolerance(atol=1e-3, rtol=1e-2)
    ok = compare_arrays("y", ref + np.array([5e-4, 0.5, 0.0, 0.0], dtype=np.float32), ref, tol)
    assert ok.passed and ok.mismatches == 0
    bad = compare_arrays("y", ref + np.array([2e-2, 0.0, 0.0, 0.0], dtype=np.float32), ref, tol)
    assert not bad.passed and bad.mismatches == 1 and bad.worst_index == (0,)
    assert bad.atol_needed == pytest.approx(2e-2 - 1e-2 * 1.0, abs=1e-6)
    shape = compare_arrays("y", ref[:2], ref, tol)
    assert not shape.passed and "shape mismatch" in shape.note
    nan = compare_arrays("y", np.array([1.0, 100.0, 0.0, 1.0], dtype=np.float32), ref, tol)
    assert not nan.passed and "non-finite" in nan.note
