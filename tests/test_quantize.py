"""Quantized TFLite (``--quantize``): each mode x a CNN, a transformer block and an LSTM, written, verified, then
loaded in LiteRT (``ai_edge_litert``) in a fresh process that imports nothing from crossport and compared with the
PyTorch source; a calibration set far from the inputs (int8 modes) or an unreachable threshold (fp16/dynamic)
fails and the report names the metric; latency is reported for every target."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from converter import ConvertOptions, convert
from converter.parity.quality import MODES, cosine

LSTM = "fixtures.sources.lstm_forecaster:LSTMForecaster"
MODELS = {  # name -> (source, --input-shape, how to rebuild the source in this process)
    "cnn": ("fixtures.models:small_cnn", ((None, (2, 3, 16, 16)),)),
    "transformer": ("transformer_block.pt2", ()),
    "lstm": (LSTM, ((None, (2, 10, 3)),)),
}

# Runs in a fresh interpreter: only numpy and LiteRT, the way a deployment loads the file.
LITERT_SCRIPT = r"""
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter
assert "converter" not in sys.modules and "tensorflow" not in sys.modules
interp = Interpreter(model_path=sys.argv[1])
x = np.load(sys.argv[2])["x"]
d = interp.get_input_details()[0]
interp.resize_tensor_input(d["index"], list(x.shape), strict=False)
interp.allocate_tensors()
d = interp.get_input_details()[0]
scale, zero = d["quantization"]
if d["dtype"] != np.float32:
    x = np.clip(np.round(x / scale + zero), -128, 127)
interp.set_tensor(d["index"], x.astype(d["dtype"]))
interp.invoke()
o = interp.get_output_details()[0]
y = interp.get_tensor(o["index"])
if o["dtype"] != np.float32:
    y = (y.astype(np.float32) - o["quantization"][1]) * o["quantization"][0]
np.save(sys.argv[3], y)
print("tensorflow" in sys.modules)
"""


def _source(name: str, saved_sources: dict[str, Path]) -> tuple[str, tuple]:
    src, shapes = MODELS[name]
    return (str(saved_sources[src]) if src.endswith(".pt2") else src), shapes


def _torch_model(name: str):  # noqa: ANN202 - a torch module
    import torch

    from fixtures.models import build

    if name == "lstm":
        from fixtures.sources.lstm_forecaster import LSTMForecaster

        torch.manual_seed(0)  # what crossport does before calling a factory (seed 0)
        return LSTMForecaster().eval()
    return build("small_cnn" if name == "cnn" else "transformer_block")


def _inputs(name: str, batch: int = 6) -> np.ndarray:
    rng = np.random.default_rng(123)
    shape = {"cnn": (batch, 3, 16, 16), "transformer": (batch, 5, 16), "lstm": (batch, 10, 3)}[name]
    return rng.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", list(MODELS))
def test_quantized_tflite_loads_in_litert_in_a_fresh_process(name: str, mode: str, saved_sources,
                                                             tmp_path: Path) -> None:
    import torch

    source, shapes = _source(name, saved_sources)
    out = tmp_path / f"{name}_{mode}.tflite"
    result = convert(source, ConvertOptions(output=str(out), input_shapes=shapes, quantize=mode, latency_runs=3))
    report = result.report
    assert report.passed, report.format_text()
    assert out.is_file() and report.target == "tflite"
    final = report.hops[-1]
    assert final.decisive and final.quality and final.judged_by, report.format_text()
    # the float model the file was quantized from is in the report too, with the same metrics
    floating = [h for h in report.hops if h.candidate.startswith("keras float32")]
    assert floating and floating[0].quality and not floating[0].decisive
    q = report.quantization
    assert q["mode"] == mode and q["outputs"][0]["float"] and q["outputs"][0]["decided_by"].startswith("passed")
    roles = {l.role: l for l in report.latency}
    assert {"source", "artifact"} <= set(roles) and roles["artifact"].runs == 3 and roles["artifact"].median_ms > 0
    ios = {io["kind"]: io for io in q["io"]}
    if mode == "int8-full":
        assert ios["input"]["dtype"] == "int8" and ios["output"]["dtype"] == "int8"
        assert ios["input"]["scale"] > 0 and isinstance(ios["input"]["zero_point"], int)
    else:
        assert ios["input"]["dtype"] == "float32" and ios["input"]["scale"] is None
    manifest = json.loads(Path(f"{out}.crossport.json").read_text())
    assert manifest["quantization"]["mode"] == mode and manifest["latency"]
    if mode in ("int8", "int8-full"):
        assert "seeded sample inputs" in q["calibration"]
        assert any("--calibration" in n for n in report.notes)

    x = _inputs(name)
    with torch.no_grad():
        ref = _torch_model(name)(torch.from_numpy(x)).numpy()
    feed = np.transpose(x, (0, 2, 3, 1)) if report.inputs[0].target_layout == "NHWC" else x
    np.savez(tmp_path / "in.npz", x=np.ascontiguousarray(feed))
    proc = subprocess.run([sys.executable, "-c", LITERT_SCRIPT, str(out), str(tmp_path / "in.npz"),
                           str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False", "LiteRT alone must load the file (no TensorFlow, no Flex delegate)"
    got = np.load(tmp_path / "y.npy")
    assert got.shape == ref.shape
    assert cosine(got, ref) >= q["thresholds"]["min_cosine"], (cosine(got, ref), mode, name)


@pytest.mark.parametrize("mode", ["int8", "int8-full"])
def test_calibration_far_from_the_inputs_fails_top1_and_says_so(mode: str, tmp_path: Path) -> None:
    """Calibrated on inputs a thousand times smaller than the verification inputs, every activation saturates."""
    rng = np.random.default_rng(5)
    calib = tmp_path / "far.npz"
    np.savez(calib, input=(rng.standard_normal((16, 3, 16, 16)) * 1e-3).astype(np.float32))
    out = tmp_path / "m.tflite"
    result = convert("fixtures.models:small_cnn", ConvertOptions(output=str(out), input_shapes=MODELS["cnn"][1],
                                                                 quantize=mode, calibration=str(calib)))
    report = result.report
    assert not report.passed and not out.exists() and result.artifact is None
    decided = report.quantization["outputs"][0]["decided_by"]
    assert "top-1 agreement" in decided and "< 90%" in decided, decided
    assert str(calib) in report.quantization["calibration"]
    assert "top-1 agreement" in report.format_text() and "FAILED" in report.format_text()


@pytest.mark.parametrize("mode, flag, metric", [("fp16", {"min_snr_db": 300.0}, "SNR"),
                                                ("dynamic", {"min_cosine": 1.0, "min_snr_db": 300.0}, "SNR")])
def test_threshold_override_fails_float_modes_and_names_the_metric(mode: str, flag: dict, metric: str,
                                                                    tmp_path: Path) -> None:
    """fp16/dynamic take no calibration: their negative case is a threshold the quantized file cannot meet."""
    out = tmp_path / "m.tflite"
    result = convert("fixtures.models:small_cnn", ConvertOptions(output=str(out), input_shapes=MODELS["cnn"][1],
                                                                 quantize=mode, **flag))
    assert not result.report.passed and not out.exists()
    assert metric in result.report.quantization["outputs"][0]["decided_by"]


def test_fp16_flag_is_an_alias(tmp_path: Path) -> None:
    out = tmp_path / "m.tflite"
    report = convert("fixtures.models:small_cnn", ConvertOptions(output=str(out), input_shapes=MODELS["cnn"][1],
                                                                 fp16=True, latency_runs=0)).report
    assert report.passed and report.quantization["mode"] == "fp16" and report.latency == ()


@pytest.mark.parametrize("target", ["keras", "onnx"])
def test_latency_for_other_targets(target: str, tmp_path: Path) -> None:
    out = tmp_path / f"m.{target}"
    report = convert("fixtures.models:small_cnn", ConvertOptions(output=str(out), input_shapes=MODELS["cnn"][1],
                                                                 latency_runs=2)).report
    assert report.passed
    roles = {l.role: l for l in report.latency}
    assert set(roles) == {"source", "artifact"} and all(l.runs == 2 and l.median_ms > 0 for l in roles.values())
    assert "latency (median" in report.format_text()


def _lone_erf_onnx(path: Path) -> Path:
    """``y = erf(x)``: TF's Erf has no TFLite builtin (only exact GELU's pattern becomes one), so it needs Flex."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "erf",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_flex_ops_are_refused_unless_allowed(tmp_path: Path) -> None:
    from converter.errors import UnsupportedError

    source = _lone_erf_onnx(tmp_path / "erf.onnx")
    out = tmp_path / "erf.tflite"
    with pytest.raises(UnsupportedError, match=r"Select TF \(Flex\) ops \(tf\.Erf\).*LiteRT.*--allow-flex"):
        convert(str(source), ConvertOptions(output=str(out)))
    assert not out.exists() and not list(tmp_path.glob(".crossport-*"))
    report = convert(str(source), ConvertOptions(output=str(out), allow_flex=True, force=True)).report
    assert out.is_file() and any("Flex delegate" in n and "LiteRT" in n for n in report.notes)


STEM_NET = '''import torch
from torch import nn


class Stem(nn.Module):
    """ResNet's stem in miniature: conv, ReLU, then a 3x3 stride-2 max pool with padding 1."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))
'''


def test_padded_max_pool_quantizes_with_finite_ranges(tmp_path: Path) -> None:
    """A -inf pad before the max pool gave its tensor an int8 scale of ~1e36 and LiteRT's XNNPACK refused the file;
    the border is mirrored instead (exact for pad <= kernel/2)."""
    from ai_edge_litert.interpreter import Interpreter

    (tmp_path / "stem.py").write_text(STEM_NET)
    out = tmp_path / "stem.tflite"
    report = convert(f"{tmp_path / 'stem.py'}:Stem", ConvertOptions(output=str(out), input_shapes=((None, (2, 3, 16, 16)),),
                                                                    quantize="int8", latency_runs=0)).report
    assert report.passed, report.format_text()
    interp = Interpreter(model_path=str(out))  # LiteRT's default delegate (XNNPACK) prepares every node
    interp.allocate_tensors()
    scales = [t["quantization"][0] for t in interp.get_tensor_details() if t["dtype"] == np.int8]
    assert scales and max(scales) < 1e3, max(scales)


def test_calibration_file_by_order_in_the_source_layout(tmp_path: Path) -> None:
    """An unnamed array (``arr_0``) is taken by order, NCHW as the source takes it, and moved to the file's NHWC."""
    calib = tmp_path / "calib.npz"
    np.savez(calib, np.random.default_rng(9).standard_normal((24, 3, 16, 16)).astype(np.float32))
    out = tmp_path / "m.tflite"
    report = convert("fixtures.models:small_cnn", ConvertOptions(output=str(out), input_shapes=MODELS["cnn"][1],
                                                                 quantize="int8-full", calibration=str(calib),
                                                                 latency_runs=0)).report
    assert report.passed, report.format_text()
    assert report.quantization["calibration"] == f"24 samples from {calib}"
    assert not any("seeded sample inputs" in n for n in report.notes)
