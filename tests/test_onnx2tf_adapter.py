"""Real onnx2tf conversions of a tiny seeded CNN through ``converter.adapters.onnx2tf_adapter`` (offline)."""
from __future__ import annotations

import os
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx2tf", reason="onnx2tf is the optional extra crossport[onnx2tf]")

pytestmark = pytest.mark.slow

ATOL = 1e-4


class _NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Any attempt to reach the network (onnx2tf's calibration download uses requests.get) fails the test."""
    attempts: list[str] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(repr(args[:1]))
        raise _NetworkUsed(f"network access attempted: {args[:1]!r}")

    import requests

    monkeypatch.setattr(requests, "get", refuse)
    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A seeded Conv/BN/ReLU/Pool/Linear CNN exported with the dynamo exporter, static batch 2 (so onnx2tf takes
    its calibration-image path: every input is 4-D, 3 channels, batch <= 20)."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    ).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 1.5)
    x = torch.randn(2, 3, 32, 32)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"], output_names=["y"], verbose=False)
    sample = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    return path, sample


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _tflite(path: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    try:  # tf.lite.Interpreter is deprecated in TF 2.19 in favour of LiteRT (ai-edge-litert, an onnx2tf pin)
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:  # pragma: no cover
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner("serving_default")
    (name,) = runner.get_input_details()
    return runner(**{name: x})


def test_offline_conversion_matches_onnxruntime(tiny_onnx: tuple[Path, np.ndarray], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch, no_network: list[str]) -> None:
    import onnx2tf.onnx2tf as upstream
    import tensorflow as tf

    from converter.adapters import onnx2tf_adapter as adapter

    onnx_path, x = tiny_onnx
    onnx_before = onnx_path.read_bytes()
    seen: list[bool] = []
    original = upstream.download_test_image_data

    def spy() -> np.ndarray:  # the calibration file must be in onnx2tf's cwd, so nothing is downloaded
        seen.append(Path(os.getcwd(), adapter.CALIBRATION_FILE).is_file())
        return original()

    monkeypatch.setattr(upstream, "download_test_image_data", spy)
    cwd = os.getcwd()
    result = adapter.convert_with_onnx2tf(onnx_path, tmp_path, saved_model=True, tflite_fp32=True, tflite_fp16=True)

    assert seen == [True], "onnx2tf did not take (or did not find) the local calibration file"
    assert no_network == []
    assert os.getcwd() == cwd
    assert onnx_path.read_bytes() == onnx_before, "the caller's ONNX file was modified"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_float16.tflite", "model_float32.tflite", "saved_model"]
    assert result.input_names == ("x",) and result.output_names == ("y",)
    assert result.input_shapes == ((2, 32, 32, 3),)
    assert result.seconds.total >= result.seconds.graph > 0

    expected = _onnxruntime(onnx_path, x)
    x_nhwc = np.transpose(x, (0, 2, 3, 1))  # onnx2tf makes 4-D inputs NHWC

    loaded = tf.saved_model.load(str(result.saved_model))
    got_sm = loaded.signatures["serving_default"](x=tf.constant(x_nhwc))["y"].numpy()
    np.testing.assert_allclose(got_sm, expected, atol=ATOL, rtol=0)

    got_fp32 = _tflite(result.tflite_fp32, x_nhwc)["y"]
    np.testing.assert_allclose(got_fp32, expected, atol=ATOL, rtol=0)

    got_fp16 = _tflite(result.tflite_fp16, x_nhwc)["y"]  # float16 weights: only a sanity bound
    np.testing.assert_allclose(got_fp16, expected, atol=1e-2, rtol=1e-2)


def test_only_requested_artifacts_and_keep_layout(tiny_onnx: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    from converter.adapters.onnx2tf_adapter import convert_with_onnx2tf

    onnx_path, x = tiny_onnx
    result = convert_with_onnx2tf(onnx_path, tmp_path, saved_model=False, tflite_fp32=True, tflite_fp16=False,
                                  keep_layout=True)
    assert result.saved_model is None and result.tflite_fp16 is None
    assert [p.name for p in tmp_path.iterdir()] == ["model_float32.tflite"]
    assert result.input_shapes == ((2, 3, 32, 32),)  # channels-first kept
    np.testing.assert_allclose(_tflite(result.tflite_fp32, x)["y"], _onnxruntime(onnx_path, x), atol=ATOL, rtol=0)


def test_unknown_op_is_unsupported_error_naming_the_op(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from converter.errors import UnsupportedError
    from converter.adapters.onnx2tf_adapter import convert_with_onnx2tf

    node = helper.make_node("Relu", ["x"], ["h"], name="relu")
    bad = helper.make_node("FrobnicateTensor", ["h"], ["y"], name="frob", domain="com.example")
    graph = helper.make_graph(
        [node, bad], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    cwd = os.getcwd()
    with pytest.raises(UnsupportedError, match="FrobnicateTensor") as info:
        convert_with_onnx2tf(path, tmp_path / "work", saved_model=True, tflite_fp32=False, tflite_fp16=False)
    assert "\n" not in str(info.value)
    assert os.getcwd() == cwd
    assert list((tmp_path / "work").iterdir()) == []  # the private run directory was removed


def test_dynamic_batch_and_flatten_after_layout_change(tmp_path: Path) -> None:
    """Dynamic batch stays dynamic, and Flatten -> Linear after NCHW->NHWC still matches (a reported onnx2tf trap)."""
    import tensorflow as tf
    import torch

    from converter.adapters.onnx2tf_adapter import convert_with_onnx2tf

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(4 * 8 * 8, 3),
    ).eval()
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 16, 16),), str(path), dynamo=True, input_names=["x"],
                      output_names=["y"], dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},),
                      verbose=False)
    result = convert_with_onnx2tf(path, tmp_path / "out", saved_model=True, tflite_fp32=True, tflite_fp16=False)
    assert result.input_shapes == ((None, 16, 16, 3),)
    serve = tf.saved_model.load(str(result.saved_model)).signatures["serving_default"]
    for batch in (1, 3):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype(np.float32)
        expected = _onnxruntime(path, x)
        x_nhwc = np.transpose(x, (0, 2, 3, 1))
        np.testing.assert_allclose(serve(x=tf.constant(x_nhwc))["y"].numpy(), expected, atol=ATOL, rtol=0)
        np.testing.assert_allclose(_tflite(result.tflite_fp32, x_nhwc)["y"], expected, atol=ATOL, rtol=0)
