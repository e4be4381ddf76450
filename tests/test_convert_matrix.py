"""Each PyTorch source format x each target: real export, real conversion, real parity checks."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter import ConvertOptions, convert

TARGET_SUFFIX = {"keras": ".keras", "saved_model": "_sm", "tflite": ".tflite", "onnx": ".onnx"}
CNN_SHAPE = ((None, (2, 3, 16, 16)),)


def _source_args(kind: str, saved: dict[str, Path]) -> tuple[str, dict]:
    if kind == "factory":
        return "fixtures.models:small_cnn", {"input_shapes": CNN_SHAPE}
    if kind == "state_dict":
        return str(saved[kind]), {"input_shapes": CNN_SHAPE, "model_class": "fixtures.models:SmallCNN"}
    if kind == "pickled":
        return str(saved[kind]), {"input_shapes": CNN_SHAPE, "trust_pickle": True}
    if kind == "torchscript":
        return str(saved[kind]), {"input_shapes": CNN_SHAPE}
    return str(saved[kind]), {}


@pytest.mark.parametrize("target", ["keras", "saved_model", "tflite", "onnx"])
@pytest.mark.parametrize("kind", ["pt2", "torchscript", "state_dict", "factory", "pickled"])
def test_small_cnn_every_format_every_target(kind: str, target: str, saved_sources, tmp_path: Path) -> None:
    source, extra = _source_args(kind, saved_sources)
    out = tmp_path / f"model{TARGET_SUFFIX[target]}"
    result = convert(source, ConvertOptions(to=target, output=str(out), **extra))
    report = result.report
    assert report.passed, report.format_text()
    assert out.exists()
    names = [h.name for h in report.hops]
    if target == "onnx":
        assert names == ["pytorch -> onnxruntime"]
    else:  # end to end; onnxruntime only localizes a failure
        assert len(names) == 1 and names[0].startswith("pytorch -> ") and "onnxruntime" not in names[0]
        assert report.inputs[0].target_layout == "NHWC"
    for hop in report.hops:
        for o in hop.outputs:
            assert o.max_abs_error < 1e-4 and o.cosine_similarity > 0.9999
    assert len(report.input_sets) >= 2 and {s["distribution"] for s in report.input_sets} == {"normal", "uniform"}
    if target == "keras":
        assert report.trainable_params["pytorch"] == report.trainable_params["keras"]


@pytest.mark.parametrize("name", ["mlp", "two_in_two_out", "transformer_block"])
@pytest.mark.parametrize("target", ["keras", "tflite"])
def test_other_fixtures(name: str, target: str, saved_sources, tmp_path: Path) -> None:
    out = tmp_path / f"{name}{TARGET_SUFFIX[target]}"
    result = convert(str(saved_sources[f"{name}.pt2"]), ConvertOptions(output=str(out)))
    assert result.report.passed, result.report.format_text()
    if target == "keras":
        assert result.report.trainable_params["pytorch"] == result.report.trainable_params["keras"]
        assert result.report.dynamic_batch


def test_keep_layout_keeps_nchw(saved_sources, tmp_path: Path) -> None:
    out = tmp_path / "nchw.keras"
    result = convert(str(saved_sources["pt2"]), ConvertOptions(output=str(out), keep_layout=True))
    assert result.report.passed
    assert result.report.inputs[0].target_layout == "NCHW"


KERAS_RELOAD = r"""
import os, sys, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
m = keras.models.load_model(sys.argv[1])
assert not any(k.startswith("converter") for k in sys.modules), "crossport imported at load time"
x = np.load(sys.argv[2])
n = int(sum(np.prod(w.shape) for w in m.trainable_weights))
y = np.asarray(m(x, training=False))
np.save(sys.argv[3], y)
print(json.dumps({"trainable": n, "names": [l.name for l in m.layers][:4]}))
"""


def test_keras_file_loads_with_plain_keras_in_fresh_process(saved_sources, tmp_path: Path) -> None:
    """The .keras output is a Keras 3 file: plain load_model, trainable weights, same numbers as PyTorch."""
    import json

    import torch

    from fixtures.models import build

    out = tmp_path / "cnn.keras"
    assert convert(str(saved_sources["pt2"]), ConvertOptions(output=str(out))).passed
    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16)).astype("float32")
    np.save(tmp_path / "x.npy", x.transpose(0, 2, 3, 1))
    script = tmp_path / "reload.py"
    script.write_text(KERAS_RELOAD)
    proc = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    model = build("small_cnn")
    assert info["trainable"] == sum(p.numel() for p in model.parameters())
    assert "conv1" in info["names"]  # the user's own module names survive as layer names
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("target", ["keras", "saved_model", "tflite"])
def test_onnx_source(target: str, saved_sources, tmp_path: Path) -> None:
    """ONNX files are first-class sources: ONNX (onnxruntime) is the reference."""
    onnx_file = tmp_path / "cnn.onnx"
    assert convert(str(saved_sources["pt2"]), ConvertOptions(output=str(onnx_file))).passed
    out = tmp_path / f"from_onnx{TARGET_SUFFIX[target]}"
    result = convert(str(onnx_file), ConvertOptions(output=str(out), to=target))
    assert result.passed, result.report.format_text()
    assert result.report.hops[0].reference == "onnxruntime"
    assert out.exists()


needs_onnx2tf = pytest.mark.skipif(importlib.util.find_spec("onnx2tf") is None,
                                   reason="onnx2tf is the optional extra crossport[onnx2tf]")


@needs_onnx2tf
@pytest.mark.parametrize("target", ["saved_model", "tflite"])
def test_onnx2tf_route(target: str, saved_sources, tmp_path: Path) -> None:
    out = tmp_path / f"o2t{TARGET_SUFFIX[target]}"
    result = convert(str(saved_sources["pt2"]), ConvertOptions(output=str(out), to=target, route="onnx2tf"))
    assert result.passed, result.report.format_text()
    assert "onnx2tf" in result.report.route and out.exists()
    assert [h.passed for h in result.report.hops] == [True, True, True]


@needs_onnx2tf
def test_auto_route_falls_back_to_onnx2tf(tmp_path: Path) -> None:
    """An op the Keras builder lacks (CumSum) still converts to SavedModel through onnx2tf, verified."""
    src = tmp_path / "cum.py"
    src.write_text("import torch\nclass Cum(torch.nn.Module):\n    def forward(self, x):\n"
                   "        return torch.cumsum(x, dim=1) * 2\n")
    out = tmp_path / "cum_sm"
    result = convert(f"{src}:Cum", ConvertOptions(output=str(out), to="saved_model", input_shapes=((None, (2, 5)),)))
    assert result.passed, result.report.format_text()
    assert result.report.route[-1] == "onnx2tf"
    assert any("CumSum" in n for n in result.report.notes)


def test_saved_model_signature_names_inputs_and_outputs(saved_sources, tmp_path: Path) -> None:
    """TF Serving sees the PyTorch input names and named outputs, with a dynamic batch."""
    import tensorflow as tf

    out = tmp_path / "two_sm"
    result = convert(str(saved_sources["two_in_two_out.pt2"]), ConvertOptions(output=str(out), to="saved_model"))
    assert result.passed, result.report.format_text()
    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    inputs = sig.structured_input_signature[1]
    assert set(inputs) == {"image", "features"}
    assert inputs["image"].shape.as_list() == [None, 8, 8, 3]
    assert len(sig.structured_outputs) == 2
