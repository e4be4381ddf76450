"""`crossport verify` on every runner pair crossport's conversions produce, plus inputs, layouts and exit codes."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converter.cli import main
from converter.parity.loaders import LoadOptions
from converter.parity.verify import VerifyOptions, verify


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", *args])
    return result.exit_code, result.output


@pytest.mark.parametrize("ref, cand", [
    ("pt2", "onnx"), ("onnx", "keras"), ("pt2", "keras"), ("pt2", "saved_model"), ("pt2", "tflite"),
    ("keras", "tflite"), ("keras", "pt2"), ("onnx", "saved_model"),
])
def test_runner_pairs_pass(artifacts: dict[str, Path], ref: str, cand: str) -> None:
    report = verify(str(artifacts[ref]), str(artifacts[cand]))
    assert report.passed, report.format_text()
    assert [s["distribution"] for s in report.input_sets] == ["normal", "uniform", "large"]
    assert [s["shapes"][0][0] for s in report.input_sets] == [2, 1, 2]  # dynamic batch: batch 1 as well
    x = report.inputs[0]
    channels_last = {"keras", "saved_model", "tflite"}
    assert x.reference_layout == ("NHWC" if ref in channels_last else "NCHW")
    assert x.candidate_layout == ("NHWC" if cand in channels_last else "NCHW")
    assert x.layout_from == "manifest"


@pytest.mark.parametrize("ref, extra", [
    ("torchscript", ["--input-shape", "2x3x16x16"]),
    ("state_dict", ["--model-class", "fixtures.models:SmallCNN", "--input-shape", "2x3x16x16"]),
    ("factory", []),
])
def test_torch_source_formats_via_cli(artifacts: dict[str, Path], ref: str, extra: list[str]) -> None:
    source = "fixtures.models:small_cnn" if ref == "factory" else str(artifacts[ref])
    code, out = cli(source, str(artifacts["keras"]), *extra)
    assert code == 0, out
    assert "result: PASSED" in out and "max abs" in out


def test_two_inputs_two_outputs(artifacts: dict[str, Path]) -> None:
    report = verify(str(artifacts["two.pt2"]), str(artifacts["two.keras"]))
    assert report.passed, report.format_text()
    assert [t.name for t in report.inputs] == ["image", "features"]
    assert [(t.reference_layout, t.candidate_layout) for t in report.inputs] == [("NCHW", "NHWC"), ("none", "none")]
    assert len(report.hop.outputs) == 2


def test_mismatch_exits_1_with_table(artifacts: dict[str, Path]) -> None:
    # --elementwise: the default scale term (1e-5 * rms) alone would pass float32 rounding at this output scale
    code, out = cli(str(artifacts["pt2"]), str(artifacts["keras"]), "--atol", "1e-12", "--rtol", "0",
                    "--elementwise", "--no-localize")
    assert code == 1, out
    assert "FAIL" in out and "atol needed" in out and "worst element at index" in out


def test_per_output_tolerance(artifacts: dict[str, Path]) -> None:
    code, out = cli(str(artifacts["pt2"]), str(artifacts["keras"]), "--atol", "1e-12", "--rtol", "0",
                    "--tol", "output=1e-2,1e-3", "-q")
    assert code == 0, out
    code, out = cli(str(artifacts["pt2"]), str(artifacts["keras"]), "--tol", "nosuch=1,1")
    assert code == 7 and "not an output name" in out


def test_layouts_differ_without_manifest_says_what_to_pass(artifacts: dict[str, Path], tmp_path: Path) -> None:
    from fixtures.save import without_contract

    # neither bare.keras.crossport.json beside it nor the contract inside (a Keras file from elsewhere)
    bare = without_contract(artifacts["keras"], tmp_path / "bare.keras")
    code, out = cli(str(artifacts["pt2"]), str(bare))
    assert code == 7, out
    assert "--layout x=nhwc" in out and out.count("\n") == 1
    code, out = cli(str(artifacts["pt2"]), str(bare), "--layout", "x=nhwc", "-q")
    assert code == 0, out
    code, out = cli(str(artifacts["pt2"]), str(bare), "--manifest", f"{artifacts['keras']}.crossport.json", "-q")
    assert code == 0, out


def test_real_inputs_from_npz(artifacts: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(3).random((5, 3, 16, 16), dtype=np.float32))
    report = verify(str(artifacts["pt2"]), str(artifacts["tflite"]), VerifyOptions(inputs=str(data)))
    assert report.passed, report.format_text()
    assert [s["label"] for s in report.input_sets] == ["given"]
    assert report.inputs[0].shape == (5, 3, 16, 16)


def test_input_errors_have_their_exit_codes(artifacts: dict[str, Path], tmp_path: Path) -> None:
    assert cli(str(tmp_path / "missing.pt2"), str(artifacts["keras"]))[0] == 3
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert cli(str(artifacts["pt2"]), str(bad))[0] == 4
    code, out = cli(str(artifacts["pt2"]), str(artifacts["keras"]), "--input-shape", "2x3x17x16")
    assert code == 7, out
    assert cli(str(artifacts["pt2"]))[0] == 2


def test_lambda_layer_needs_trust_code(tmp_path: Path) -> None:
    from converter.frameworks import keras

    k = keras()
    inp = k.Input((4,), name="x")
    model = k.Model(inp, k.layers.Lambda(lambda t: t * 2.0)(inp))
    path = tmp_path / "lam.keras"
    model.save(str(path))
    code, out = cli(str(path), str(path))
    assert code == 8 and "--trust-code" in out
    report = verify(str(path), str(path), VerifyOptions(load=LoadOptions(trust_code=True)))
    assert report.passed


def test_generated_input_distributions_and_int_range() -> None:
    from converter.parity.inputs import InputSpec, make_input_sets

    sets = make_input_sets([InputSpec("ids", (2, 7), "int64", (5, 9)), InputSpec("x", (2, 4))], seed=1,
                           dynamic_batch=True, distributions=("normal", "uniform", "large"))
    assert [s.arrays[0].shape[0] for s in sets] == [2, 1, 2]  # the second draw at batch 1
    assert [s.arrays[0].shape[0] for s in make_input_sets([InputSpec("x", (1, 4))], dynamic_batch=True)] == [1, 2]
    assert [s.arrays[0].shape[0] for s in make_input_sets([InputSpec("x", (2, 4))], dynamic_batch=True,
                                                          other_batch=3)] == [2, 3]
    assert all(5 <= s.arrays[0].min() and s.arrays[0].max() < 9 for s in sets)
    assert np.abs(sets[2].arrays[1]).max() > 10 * np.abs(sets[0].arrays[1]).max() / 2


def test_int_range_flag_reaches_specs(artifacts: dict[str, Path]) -> None:
    code, out = cli(str(artifacts["pt2"]), str(artifacts["keras"]), "--int-range", "9,3")
    assert code == 7 and "--int-range" in out


def test_json_report_schema(artifacts: dict[str, Path], tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    code, out = cli(str(artifacts["pt2"]), str(artifacts["onnx"]), "--report", str(out_json), "-q")
    assert code == 0, out
    data = json.loads(out_json.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "crossport.verify" and data["passed"] is True
    for key in ("reference", "candidate", "tolerance", "inputs", "outputs", "input_sets", "comparison",
                "first_divergent_layer", "layers", "error_histograms", "route", "versions", "command", "mode"):
        assert key in data
    o = data["comparison"]["outputs"][0]
    assert {"max_abs_error", "max_rel_error", "mismatches", "cosine_similarity", "worst_index",
            "atol_needed"} <= set(o)
    assert data["route"][0] == "pt2" and "verify" in data["command"]


def test_h5_against_keras_and_json_output(tmp_path: Path) -> None:
    from converter.frameworks import keras

    k = keras()
    k.utils.set_random_seed(0)
    model = k.Sequential([k.Input((6,), name="x"), k.layers.Dense(5, activation="tanh"), k.layers.Dense(3)])
    model.save(str(tmp_path / "m.h5"))
    model.save(str(tmp_path / "m.keras"))
    code, out = cli(str(tmp_path / "m.h5"), str(tmp_path / "m.keras"), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["reference"]["format"] == "h5" and data["candidate"]["format"] == "keras"
    assert data["input_sets"][0]["shapes"] == [[2, 6]]  # dynamic batch filled in from the signature


def test_torchscript_reference_takes_shapes_from_the_candidate(artifacts: dict[str, Path]) -> None:
    report = verify(str(artifacts["torchscript"]), str(artifacts["keras"]))  # candidate NHWC -> reference NCHW
    assert report.passed and report.inputs[0].shape == (2, 3, 16, 16)


def test_unwritable_report_exits_6(artifacts: dict[str, Path], tmp_path: Path) -> None:
    code, out = cli(str(artifacts["pt2"]), str(artifacts["onnx"]), "--report", str(tmp_path / "no" / "r.json"))
    assert code == 6 and "cannot write the report" in out


def test_outputs_matched_by_name() -> None:
    from types import SimpleNamespace

    from converter.parity.comparison import _output_names

    ref = SimpleNamespace(output_names=("logits", "emb"))
    cand = SimpleNamespace(output_names=("emb", "logits"))
    assert _output_names(ref, cand, (), 2, 2) == (("logits", "emb"), [1, 0])
    unnamed = SimpleNamespace(output_names=())
    assert _output_names(unnamed, cand, (), 2, 2) == (("emb", "logits"), None)
    assert _output_names(unnamed, unnamed, (), 2, 2) == (("output0", "output1"), None)


def test_inputs_matched_by_name_when_the_signature_sorts_them(artifacts: dict[str, Path], tmp_path: Path) -> None:
    """A SavedModel signature lists inputs alphabetically (features, image); PyTorch's order is (image, features)."""
    for ref, cand in (("two.pt2", "two.saved_model"), ("two.saved_model", "two.pt2"), ("two.keras", "two.saved_model")):
        report = verify(str(artifacts[ref]), str(artifacts[cand]), VerifyOptions(distributions=("normal",)))
        assert report.passed, report.format_text()
    golden = tmp_path / "golden"
    assert cli(str(artifacts["two.pt2"]), str(artifacts["two.keras"]), "--save-golden", str(golden), "-q")[0] == 0
    code, out = cli(str(artifacts["two.saved_model"]), "--golden", str(golden))
    assert code == 0, out
