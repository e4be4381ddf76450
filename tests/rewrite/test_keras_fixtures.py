"""Every Keras fixture source rewrites to PyTorch, runs, and passes verification by weight transfer (real Keras,
real torch): with --input-shape facts without a single TODO, and without them it still parses and is idempotent."""
from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from converter.rewrite import RewriteOptions, rewrite_source

SOURCES = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "keras"
#: fixture -> (Keras input shape, entry point)
CASES = {
    "mnist_sequential": ("2x28x28x1", "build_model"), "functional_cnn": ("2x32x32x3", "build_cnn"),
    "resnet_block": ("2x16x16x8", "build_resnet_block"), "subclassed_blocks": ("2x16x16x3", "SmallNet"),
    "tf_keras_model": ("2x16x16x3", "TfNet"), "embedding_bilstm": ("2x10", "build_classifier"),
    "gru_model": ("2x7x5", "GRUModel"), "transformer_block": ("2x12x32", "build_encoder"),
    "mobilenet_block": ("2x32x32x3", "build_mobilenet"), "unet": ("1x32x32x1", "build_unet"),
}


def test_at_least_ten_keras_fixtures() -> None:
    assert set(CASES) <= {p.stem for p in SOURCES.glob("*.py")}
    assert len(CASES) >= 10


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_rewrites_without_running_anything(name: str) -> None:
    path = SOURCES / f"{name}.py"
    result = rewrite_source(path.read_text(), RewriteOptions(to="torch"), filename=str(path))
    cst.parse_module(result.code)
    assert CASES[name][1] in result.model_classes
    assert rewrite_source(result.code, RewriteOptions(to="torch")).code == result.code
    # Without --input-shape only what needs sizes torch cannot infer is marked, each with the reason.
    assert all("--input-shape" in t.why for t in result.todos), result.todos


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixture_verifies_with_facts(name: str) -> None:
    from converter.rewrite.keras_probe import probe
    from converter.rewrite.verify import VerifyOptions, format_report
    from converter.input_shapes import unnamed_shapes
    from converter.rewrite.verify_torch import verify_keras_rewrite

    path = SOURCES / f"{name}.py"
    shape, entry = CASES[name]
    facts = probe(path, entry, unnamed_shapes([shape]), {})
    result = rewrite_source(path.read_text(), RewriteOptions(to="torch", facts=facts), filename=str(path))
    assert result.todos == ()
    code = result.code
    imports = [ln for ln in code.splitlines() if ln.startswith(("import ", "from "))]
    assert not [ln for ln in imports if "keras" in ln or "tensorflow" in ln], imports
    body = code.split('"""', 2)[-1]  # past the module docstring
    assert "layers." not in body and "tf." not in body and "keras.ops" not in body
    assert rewrite_source(code, RewriteOptions(to="torch")).code == code
    report = verify_keras_rewrite(path, result, VerifyOptions(unnamed_shapes([shape]), class_name=entry))
    assert report.passed, format_report(report)
    assert len(report.inputs) >= 2 and report.max_abs_error < 1e-5
