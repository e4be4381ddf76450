"""Several sources and targets in one ``crossport convert`` (#19): each source loaded and exported once for all
of its targets, every output planned (and refused) before any work, a failing item not stopping the others."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converter.cli import main


def _cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _report(path: Path) -> dict:
    return json.loads(Path(f"{path}.crossport.json").read_text())


def test_two_sources_three_targets_share_one_export(saved_sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cnn, mlp = saved_sources["pt2"], saved_sources["mlp.pt2"]
    code, stdout, stderr = _cli("convert", str(cnn), str(mlp), "-o", str(out), "--to", "onnx", "--to", "keras",
                                "--to", "tflite", "-q", "--latency-runs", "0", "--report", str(tmp_path / "all.json"))
    assert code == 0, stdout + stderr
    names = sorted(p.name for p in out.iterdir() if not p.name.endswith(".json"))
    assert names == ["mlp.keras", "mlp.onnx", "mlp.tflite", "small_cnn.keras", "small_cnn.onnx", "small_cnn.tflite"]
    assert "6 conversion(s): 6 succeeded" in stdout
    # onnx was asked for first but runs last (its artifact is the shared export itself); keras made the export
    first, later, onnx_rep = (_report(out / f"small_cnn.{s}") for s in ("keras", "tflite", "onnx"))
    assert "export-onnx" in first["timings_s"] and "export-onnx" not in later["timings_s"]
    assert any("while converting to keras" in n for n in later["notes"])
    assert all(r["passed"] for r in (first, later, onnx_rep))
    roles = [h["role"] for h in onnx_rep["hops"]]
    assert roles[0] != "intermediate"  # PyTorch vs ONNX decides when the ONNX file is the artifact
    assert later["hops"][0]["role"] == "intermediate"
    batch = json.loads((tmp_path / "all.json").read_text())
    assert batch["kind"] == "crossport.batch" and len(batch["items"]) == 6
    # the .tflite really computes the PyTorch model (checked outside crossport)
    import torch

    from converter.frameworks import tflite_interpreter

    program = torch.export.load(str(cnn)).module()
    x = np.random.default_rng(1).standard_normal((1, 3, 16, 16)).astype(np.float32)
    expected = program(torch.from_numpy(x)).detach().numpy()
    interp = tflite_interpreter(str(out / "small_cnn.tflite"))
    detail = interp.get_input_details()[0]
    interp.resize_tensor_input(detail["index"], [1, 16, 16, 3])
    interp.allocate_tensors()
    interp.set_tensor(detail["index"], x.transpose(0, 2, 3, 1).copy())
    interp.invoke()
    got = interp.get_tensor(interp.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_keras_source_to_two_torch_targets_exports_once(tmp_path: Path) -> None:
    from fixtures import keras_models

    src = tmp_path / "cnn.keras"
    keras_models.cnn().save(src)
    out = tmp_path / "out"
    code, stdout, stderr = _cli("convert", str(src), "-o", str(out), "--to", "pt2", "--to", "torchscript", "-q",
                                "--latency-runs", "0")
    assert code == 0, stdout + stderr
    assert (out / "cnn.pt2").is_file() and (out / "cnn.pt").is_file()
    pt, ts = _report(out / "cnn.pt2"), _report(out / "cnn.pt")
    assert pt["passed"] and ts["passed"]
    assert any("exported to ONNX once, while converting to pt2" in n for n in ts["notes"])


def test_a_failing_source_does_not_stop_the_others(saved_sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(b"not a zip archive")
    code, stdout, stderr = _cli("convert", str(broken), str(saved_sources["pt2"]), "-o", str(out),
                                "--to", "keras", "--to", "onnx", "-q", "--latency-runs", "0")
    assert code == 4, stdout + stderr  # the first failing item's code: unreadable model
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith(".json")) == ["small_cnn.keras",
                                                                                    "small_cnn.onnx"]
    # one line per failing item, loaded once: the second target reports the same error without a second load
    assert stderr.count("broken.pt2 -> keras:") == 1 and stderr.count("broken.pt2 -> onnx:") == 1
    assert "Traceback" not in stderr
    assert "4 conversion(s): 2 succeeded, 2 did not" in stdout


def test_outputs_are_checked_before_any_work(saved_sources: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "small_cnn.tflite").write_bytes(b"mine")
    code, stdout, stderr = _cli("convert", str(saved_sources["pt2"]), "-o", str(out), "--to", "keras",
                                "--to", "tflite")
    assert code == 6 and "small_cnn.tflite: already exists" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["small_cnn.tflite"]  # nothing converted, nothing clobbered
    assert (out / "small_cnn.tflite").read_bytes() == b"mine"


@pytest.mark.parametrize("case", ["collision", "output-is-file", "emit-source", "no-to", "quantize"])
def test_batch_usage_errors(case: str, saved_sources: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    twin = other / "small_cnn.pt2"
    twin.write_bytes(Path(saved_sources["pt2"]).read_bytes())
    afile = tmp_path / "afile"
    afile.write_text("x")
    args = {
        "collision": [str(saved_sources["pt2"]), str(twin), "-o", str(tmp_path / "o"), "--to", "keras"],
        "output-is-file": [str(saved_sources["pt2"]), "-o", str(afile), "--to", "keras", "--to", "onnx"],
        "emit-source": [str(saved_sources["pt2"]), "-o", str(tmp_path / "o"), "--to", "keras", "--to", "onnx",
                        "--emit-source", str(tmp_path / "src")],
        # a suffix on -o must not pick the target of every item: it names the directory
        "no-to": [str(saved_sources["pt2"]), str(saved_sources["mlp.pt2"]), "-o", str(tmp_path / "o.keras")],
        "quantize": [str(saved_sources["pt2"]), "-o", str(tmp_path / "o"), "--to", "tflite", "--to", "keras",
                     "--quantize", "fp16"],
    }[case]
    code, stdout, stderr = _cli("convert", *args)
    expected = {"collision": (2, "would both be written to"), "output-is-file": (6, "-o names a directory"),
                "emit-source": (2, "--emit-source names one output"), "no-to": (2, "pass --to"),
                "quantize": (2, "applies to TFLite only")}[case]
    assert code == expected[0] and expected[1] in stderr, stdout + stderr
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.keras").exists()
