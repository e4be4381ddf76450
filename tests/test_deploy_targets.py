"""Deployment targets: each artifact is written, loaded by its own runtime in a fresh process (no crossport there),
and compared with the source model.

- SavedModel for TF Serving: ``DIR/N/saved_model.pb``, ``serving_default`` called by its input names with a REST
  ``:predict`` body in TF Serving's row format (``instances``) -- CNN, transformer block, LSTM.
- AOTInductor (``torch._inductor.aoti_load_package``): compiles take about a minute on two cores, so two models --
  the CNN from PyTorch and the transformer block from Keras; the LSTM is covered by those paths (the onnx route's
  LSTM module reaches torch.export the same way in the ExecuTorch test below).
- ExecuTorch (``executorch.runtime``), when the optional extra is installed: CNN, transformer block, Keras LSTM.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter import ConvertOptions, convert

REPO = Path(__file__).resolve().parents[1]
needs_executorch = pytest.mark.skipif(importlib.util.find_spec("executorch") is None,
                                      reason="ExecuTorch is the optional extra crossport[executorch]")

# A TF Serving stand-in for the parts that matter here: load the SavedModel, take the signature the request names,
# turn row-format instances into one tensor per input name, call it by those names.
SERVE_REST = r"""
import json, sys
import numpy as np, tensorflow as tf
path, body, out = sys.argv[1:4]
request = json.loads(open(body).read())
fn = tf.saved_model.load(path).signatures[request["signature_name"]]
rows = request["instances"]
specs = fn.structured_input_signature[1]
feeds = {k: tf.constant(np.array([r[k] for r in rows]), dtype=specs[k].dtype) for k in rows[0]}
np.savez(out, **{k: v.numpy() for k, v in fn(**feeds).items()})
"""

RUN_AOTI = r"""
import sys
import numpy as np, torch
for blocked in ("converter", "keras", "tensorflow", "onnx2torch"):
    sys.modules[blocked] = None
path, feeds, out = sys.argv[1:4]
data = np.load(feeds)
fn = torch._inductor.aoti_load_package(path)
res = fn(*[torch.from_numpy(data[f"in{i}"]) for i in range(len(data.files))])
res = res if isinstance(res, (list, tuple)) else [res]
np.savez(out, **{f"out{k}": r.numpy() for k, r in enumerate(res)})
"""

RUN_PTE = r"""
import sys
import numpy as np, torch
for blocked in ("converter", "keras", "tensorflow", "onnx2torch"):
    sys.modules[blocked] = None
from executorch.runtime import Runtime
path, feeds, out = sys.argv[1:4]
data = np.load(feeds)
method = Runtime.get().load_program(path).load_method("forward")
res = method.execute([torch.from_numpy(data[f"in{i}"]) for i in range(len(data.files))])
np.savez(out, **{f"out{k}": r.numpy() for k, r in enumerate(res)})
"""


def _fresh(code: str, *args: Path) -> np.lib.npyio.NpzFile:
    """Run ``code`` in a fresh interpreter (isolated: no PYTHONPATH, no repository on the path); its last argument
    is where it writes its outputs."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run([sys.executable, "-I", "-c", code, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, cwd=str(args[-1].parent))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return np.load(args[-1])


def _torch_source(name: str, folder: Path) -> tuple[Path, list[np.ndarray]]:
    """The fixture saved as a dynamic-batch .pt2, and its outputs on a batch of 3 (a batch size not traced)."""
    import torch

    from fixtures import models, save

    path = save.save_pt2(name, folder / f"{name}.pt2")
    shapes = models.MODELS[name][1]
    rng = np.random.default_rng(7)
    feeds = [rng.standard_normal((3, *s[1:])).astype(np.float32) for s in shapes]
    with torch.no_grad():
        out = models.build(name)(*[torch.from_numpy(f) for f in feeds])
    return path, [*feeds, *[o.numpy() for o in (out if isinstance(out, tuple) else (out,))]]


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


# ---- SavedModel for TF Serving ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["small_cnn", "transformer_block", "lstm"])
def test_saved_model_for_tf_serving(name: str, tmp_path: Path) -> None:
    source, (x, expected) = _torch_source(name, tmp_path)
    base = tmp_path / "models" / name
    (base / "1").mkdir(parents=True)  # an earlier version a server is running: must stay as it is
    (base / "1" / "marker").write_text("v1")
    result = convert(str(source), ConvertOptions(to="saved_model", output=str(base), model_version=2))
    assert result.passed, result.report.format_text()
    assert result.artifact == base / "2" and (base / "2" / "saved_model.pb").is_file()
    assert (base / "1" / "marker").read_text() == "v1" and sorted(p.name for p in base.iterdir()) == [
        "1", "2", "2.crossport.json"]

    info = result.report.serving
    assert info is not None and info.signature == "serving_default" and info.version == 2
    assert info.base_path == str(base.resolve())
    assert [t.key for t in info.inputs] == ["x"]  # the PyTorch argument name, not args_0
    assert [t.key for t in info.outputs] == [o.name for o in result.report.outputs]
    assert info.method_name == "tensorflow/serving/predict" and info.inputs[0].shape[0] == -1
    text = result.report.format_text()
    assert "inputs['x'] tensor_info:" in text and "--model_base_path=" in text
    assert json.loads(info.rest_body())["instances"][0].keys() == {"x"}
    manifest = json.loads((base / "2.crossport.json").read_text())
    assert manifest["serving"]["inputs"][0]["key"] == "x"

    # The request a client sends: images in the SavedModel's NHWC layout, one row per example.
    rows = np.transpose(x, (0, 2, 3, 1)) if x.ndim == 4 else x
    body = tmp_path / "request.json"
    body.write_text(json.dumps({"signature_name": "serving_default", "instances": [{"x": r.tolist()} for r in rows]}))
    served = _fresh(SERVE_REST, base / "2", body, tmp_path / "served.npz")
    assert set(served.files) == {t.key for t in info.outputs}
    _close(served[info.outputs[0].key], expected)


def test_plain_saved_model_is_unchanged_and_says_how_to_version(saved_sources, tmp_path: Path) -> None:
    """Without --model-version the output is a SavedModel at DIR, as before (tf.saved_model.load(DIR) works)."""
    out = tmp_path / "plain"
    result = convert(str(saved_sources["pt2"]), ConvertOptions(to="saved_model", output=str(out)))
    assert result.passed and (out / "saved_model.pb").is_file()
    assert result.report.serving is not None and result.report.serving.base_path is None
    assert "pass --model-version N" in result.report.format_text()


# ---- AOTInductor --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_aoti_from_pytorch_cnn(tmp_path: Path) -> None:
    source, (x, expected) = _torch_source("small_cnn", tmp_path)
    out = tmp_path / "cnn_aoti.pt2"
    result = convert(str(source), ConvertOptions(to="aoti", output=str(out)))
    assert result.passed, result.report.format_text()
    assert result.report.route_name == "torch-export" and result.report.dynamic_batch
    assert result.report.hops[-1].candidate == "aoti package (fresh process)"
    np.savez(tmp_path / "feeds.npz", in0=x)
    ran = _fresh(RUN_AOTI, out, tmp_path / "feeds.npz", tmp_path / "ran.npz")
    _close(ran["out0"], expected)


@pytest.mark.slow
def test_aoti_from_keras_transformer(tmp_path: Path) -> None:
    from fixtures import keras_models

    source = keras_models.save("transformer_block", tmp_path / "block.keras")
    x = np.random.default_rng(3).standard_normal((3, 8, 16)).astype(np.float32)
    expected = _keras_outputs(source, x)
    out = tmp_path / "block_aoti.pt2"
    result = convert(str(source), ConvertOptions(to="aoti", output=str(out)))
    assert result.passed, result.report.format_text()
    assert result.report.route_name == "onnx"
    np.savez(tmp_path / "feeds.npz", in0=x)
    ran = _fresh(RUN_AOTI, out, tmp_path / "feeds.npz", tmp_path / "ran.npz")
    _close(ran["out0"], expected)


def _keras_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    import keras

    return np.asarray(keras.models.load_model(str(path))(x, training=False))


# ---- ExecuTorch ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
@needs_executorch
@pytest.mark.parametrize("name", ["small_cnn", "transformer_block"])
def test_executorch_from_pytorch(name: str, tmp_path: Path) -> None:
    source, (x, expected) = _torch_source(name, tmp_path)
    out = tmp_path / f"{name}.pte"
    result = convert(str(source), ConvertOptions(to="executorch", output=str(out)))
    assert result.passed, result.report.format_text()
    assert any("XNNPACK-delegated" in n for n in result.report.notes)
    if not result.report.dynamic_batch:  # ExecuTorch planned a fixed batch: feed that batch
        x, expected = x[:2], expected[:2]
    np.savez(tmp_path / "feeds.npz", in0=x)
    ran = _fresh(RUN_PTE, out, tmp_path / "feeds.npz", tmp_path / "ran.npz")
    _close(ran["out0"], expected)


@pytest.mark.slow
@needs_executorch
def test_executorch_from_keras_lstm(tmp_path: Path) -> None:
    from fixtures import keras_models

    source = keras_models.save("lstm_text", tmp_path / "lstm.keras")
    tokens = np.random.default_rng(5).integers(0, 50, (2, 12)).astype(np.int32)
    expected = _keras_outputs(source, tokens)
    out = tmp_path / "lstm.pte"
    result = convert(str(source), ConvertOptions(to="executorch", output=str(out)))
    assert result.passed, result.report.format_text()
    np.savez(tmp_path / "feeds.npz", in0=tokens)
    ran = _fresh(RUN_PTE, out, tmp_path / "feeds.npz", tmp_path / "ran.npz")
    _close(ran["out0"], expected)


def test_executorch_missing_is_one_line_exit_5(saved_sources, tmp_path: Path) -> None:
    """Without the extra: one line naming the extra, exit 5 (unsupported), nothing written, before any work."""
    out = tmp_path / "m.pte"
    code = ("import sys; sys.modules['executorch'] = None\n"
            "from converter.cli import main; main()")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code, "convert", str(saved_sources["pt2"]), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 5, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("crossport: ")]
    assert lines == [lines[-1]] and "crossport[executorch]" in lines[-1] and "Traceback" not in proc.stderr
    assert not out.exists()


@pytest.mark.parametrize("runtime, suffix", [("aoti", ".pt2"), ("executorch", ".pte")])
def test_isolated_runner_reports_an_artifact_that_does_not_load(runtime: str, suffix: str, tmp_path: Path) -> None:
    """A broken artifact is a one-line runner error naming the runtime and the file (a failed hop), not a hang."""
    if runtime == "executorch" and importlib.util.find_spec("executorch") is None:
        pytest.skip("ExecuTorch is the optional extra crossport[executorch]")
    from converter.layout import Layout
    from converter.parity.isolated import ArtifactLoadError, IsolatedRunner

    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"PK\x03\x04 not really a package")
    runner = IsolatedRunner(path, runtime, (Layout.NONE,), (Layout.NONE,))
    with pytest.raises(ArtifactLoadError, match=f"{runtime} could not load or run broken{suffix}: .+"):
        runner.run([np.zeros((2, 4), np.float32)])
    runner.close()
