"""Routes to PyTorch: planning, ``--route`` validation, the keras-native route per fixture, and auto fallback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from converter.formats import Format
from tests.to_torch.conftest import keras_reference, plain_torch_check

FIXTURES = ["cnn", "mlp", "subclassed", "lstm_text", "gru_seq", "two_in_two_out", "transformer_block"]


def test_plan_auto_order_and_skips() -> None:
    from converter.conversion.plan import AUTO_ORDER, plan_routes

    assert AUTO_ORDER == ("onnx", "keras-native")
    assert plan_routes("auto", Format.KERAS, "pt2", False).order == AUTO_ORDER
    plan = plan_routes("auto", Format.KERAS, "torchscript", False)
    assert plan.order == ("onnx",)
    assert plan.skipped[0].route == "keras-native" and "pt2" in plan.skipped[0].reason
    assert plan_routes("auto", Format.KERAS, "pt2", True).order == ("onnx",)  # --emit-source
    assert plan_routes("auto", Format.ONNX, "pt2", False) == plan_routes("onnx", Format.ONNX, "pt2", False)
    assert plan_routes("auto", Format.ONNX, "pt2", False).skipped == ()


@pytest.mark.parametrize("name,kind,first", [
    ("cnn", "plain", "onnx"), ("mlp", "plain", "onnx"), ("two_in_two_out", "plain", "onnx"),
    ("transformer_block", "plain", "onnx"), ("lstm_text", "lstm", "onnx"),
    ("gru_seq", "recurrent", "keras-native"), ("subclassed", "opaque", "keras-native"),
])
def test_auto_order_from_the_keras_config(name: str, kind: str, first: str, keras_files: dict[str, Path]) -> None:
    """Recurrent layers or an unlisted layer list put keras-native first; everything else goes onnx first."""
    from converter.conversion.keras_kind import keras_kind
    from converter.conversion.plan import plan_routes

    assert keras_kind(str(keras_files[name]))[0] == kind
    plan = plan_routes("auto", Format.KERAS, "pt2", False, str(keras_files[name]))
    assert plan.order[0] == first and set(plan.order) == {"onnx", "keras-native"}
    assert plan.basis.startswith(f"auto: {first} first (")
    assert plan_routes("auto", Format.KERAS, "torchscript", False, str(keras_files[name])).order == ("onnx",)


def test_auto_order_for_wrapped_recurrent_layers_and_h5(tmp_path: Path) -> None:
    """Bidirectional / TimeDistributed(RNN) are found inside wrappers; a .h5 file is read from its model_config."""
    from converter.frameworks import keras
    from converter.conversion.keras_kind import keras_kind

    k = keras()
    x = inp = k.Input((5, 4, 3))
    x = k.layers.TimeDistributed(k.layers.SimpleRNN(2))(x)
    k.Model(inp, k.layers.Bidirectional(k.layers.GRU(2))(x)).save(str(tmp_path / "rnn.keras"))
    kind, why = keras_kind(str(tmp_path / "rnn.keras"))
    assert kind == "recurrent" and "Bidirectional" in why and "SimpleRNN" in why
    k.Sequential([k.Input((4,)), k.layers.Dense(2)]).save(str(tmp_path / "mlp.h5"))
    assert keras_kind(str(tmp_path / "mlp.h5"))[0] == "plain"
    assert keras_kind(str(tmp_path / "missing.keras"))[0] == "opaque"


def test_auto_cnn_goes_onnx_without_layout_permutes(keras_files: dict[str, Path], tmp_path: Path) -> None:
    """A plain CNN under auto takes the onnx route: native NCHW conv/batch_norm, one permute at the NHWC input and
    none between layers (the only other one is Keras' Flatten order, feeding the reshape)."""
    import torch

    from converter.conversion import ConvertOptions, convert

    out = tmp_path / "cnn.pt2"
    result = convert(str(keras_files["cnn"]), ConvertOptions(output=str(out)))
    assert result.report.passed and result.report.route_name == "onnx", result.report.format_text()
    assert [(a.route, a.outcome) for a in result.report.route_attempts] == [("onnx", "used")]
    assert "auto: onnx first (no recurrent layers in the Keras config)" in result.report.notes
    calls = [n for n in torch.export.load(str(out)).graph.nodes if n.op == "call_function"]
    ops = {str(n.target) for n in calls}
    assert {"aten.conv2d.default", "aten.batch_norm.default"} <= ops, ops
    permutes = [n for n in calls if "permute" in str(n.target) or "transpose" in str(n.target)]
    at_input = [n for n in permutes if n.args[0].op == "placeholder"]
    assert len(at_input) == 1, permutes
    for n in permutes:
        if n not in at_input:  # Keras flattens HWC: the permute before the Flatten reshape is the model's math
            assert all("reshape" in str(u.target) or "view" in str(u.target) for u in n.users), (n, list(n.users))
    assert len(permutes) <= 2


def test_auto_lstm_goes_onnx_as_nn_lstm(keras_files: dict[str, Path], tmp_path: Path) -> None:
    """A plain Keras LSTM is one ONNX LSTM op: the onnx route goes first and the .pt2 runs PyTorch's fused LSTM
    kernel (aten.lstm), not a loop of per-step matmuls."""
    import torch

    from converter.conversion import ConvertOptions, convert

    out = tmp_path / "lstm.pt2"
    result = convert(str(keras_files["lstm_text"]), ConvertOptions(output=str(out)))
    assert result.report.passed and result.report.route_name == "onnx", result.report.format_text()
    assert [(a.route, a.outcome) for a in result.report.route_attempts] == [("onnx", "used")]
    assert any(n.startswith("auto: onnx first (only plain LSTM layers") for n in result.report.notes)
    ops = [str(n.target) for n in torch.export.load(str(out)).graph.nodes if n.op == "call_function"]
    assert ops.count("aten.lstm.input") == 1 and ops.count("aten.matmul.default") <= 1, ops  # the Dense head


@pytest.mark.parametrize("route,fmt,target,match", [
    ("keras-native", Format.ONNX, "pt2", "keras-native reloads Keras files"),
    ("keras-native", Format.KERAS, "torchscript", "writes .pt2"),
    ("builder", Format.KERAS, "pt2", "does not apply to PyTorch targets"),
    ("onnx2tf", Format.ONNX, "pt2", "does not apply to PyTorch targets"),
    ("torch-export", Format.KERAS, "aoti", "torch-export reads PyTorch sources"),
    ("torch-export", Format.EXPORTED_PROGRAM, "pt2", "torch-export writes aoti and executorch"),
    ("onnx", Format.EXPORTED_PROGRAM, "executorch", "the onnx route reads Keras, SavedModel and ONNX"),
])
def test_forced_route_that_does_not_apply(route: str, fmt: Format, target: str, match: str) -> None:
    from converter.conversion.plan import RouteUsageError, plan_routes

    with pytest.raises(RouteUsageError, match=match):
        plan_routes(route, fmt, target, False)


@pytest.mark.parametrize("fmt", [Format.EXPORTED_PROGRAM, Format.FACTORY, Format.TORCH_CHECKPOINT])
@pytest.mark.parametrize("target", ["aoti", "executorch"])
def test_pytorch_sources_deploy_through_torch_export(fmt: Format, target: str) -> None:
    from converter.conversion.plan import plan_routes

    assert plan_routes("auto", fmt, target, False).order == ("torch-export",)
    assert plan_routes("auto", Format.KERAS, target, False).order == ("onnx",)  # keras-native writes .pt2 only


def test_pytorch_source_to_pytorch_format_is_unsupported() -> None:
    from converter.conversion.plan import plan_routes
    from converter.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="PyTorch sources go to aoti or executorch"):
        plan_routes("auto", Format.EXPORTED_PROGRAM, "pt2", False, "m.pt2")


@pytest.mark.parametrize("args,message", [
    (["--to", "torch", "--route", "builder"], "--route builder does not apply to PyTorch targets"),
    (["--to", "keras", "--route", "keras-native"], "--route keras-native does not apply to TensorFlow"),
])
def test_cli_route_usage_error(args: list[str], message: str, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from converter.cli import main

    res = CliRunner().invoke(main, ["convert", str(tmp_path / "m.keras"), *args])
    assert res.exit_code == 2, res.output
    assert message in res.output


@pytest.mark.parametrize("name", FIXTURES)
def test_keras_native_route(name: str, keras_files: dict[str, Path], tmp_path: Path) -> None:
    """Forced keras-native: verified against the TF Keras model, real parameters, plain-torch reload + train."""
    from converter.conversion import ConvertOptions, convert

    out = tmp_path / f"{name}.pt2"
    result = convert(str(keras_files[name]), ConvertOptions(output=str(out), route="keras-native"))
    report = result.report
    assert report.passed, report.format_text()
    assert report.route_name == "keras-native"
    assert [h.name for h in report.hops] == ["keras -> pytorch (pt2 file)"]
    assert report.trainable_params["pytorch"] == report.trainable_params["keras"]
    assert report.dynamic_batch
    assert any("keras, tensorflow, crossport and onnx2torch cannot be imported" in n for n in report.notes)
    feeds, outs, trainable = keras_reference(keras_files[name], 3)
    plain_torch_check(out, "pt2", feeds, outs, trainable, tmp_path)


def test_keras_native_nchw(keras_files: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np

    from converter.conversion import ConvertOptions, convert

    out = tmp_path / "cnn_nchw.pt2"
    result = convert(str(keras_files["cnn"]), ConvertOptions(output=str(out), route="keras-native", nchw=True))
    assert result.report.passed, result.report.format_text()
    assert result.report.inputs[0].target_layout == "NCHW" and result.report.inputs[0].shape == (None, 16, 16, 3)
    assert any("--nchw" in n for n in result.report.notes)
    feeds, outs, trainable = keras_reference(keras_files["cnn"], 2)
    plain_torch_check(out, "pt2", [np.ascontiguousarray(f.transpose(0, 3, 1, 2)) for f in feeds], outs, trainable,
                      tmp_path)


def test_auto_reports_the_routes_tried(keras_files: dict[str, Path], tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert
    from converter.conversion.plan import AUTO_ORDER

    report_path = tmp_path / "report.json"
    result = convert(str(keras_files["mlp"]), ConvertOptions(output=str(tmp_path / "mlp.pt2"),
                                                            report_path=str(report_path)))
    assert result.report.passed and result.report.route_name == AUTO_ORDER[0]
    data = json.loads(report_path.read_text())
    assert data["schema_version"] == 1 and data["route_name"] == AUTO_ORDER[0]
    assert data["route_attempts"][0] == {"route": AUTO_ORDER[0], "outcome": "used", "reason": "",
                                         "seconds": data["route_attempts"][0]["seconds"]}
    assert f"routes tried: {AUTO_ORDER[0]} used" in result.report.format_text()


def test_auto_falls_back_when_keras_native_is_rejected(keras_files: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from converter.conversion import ConvertOptions, convert
    from converter.adapters import keras_torch_backend

    def reject(*args: object, **kwargs: object) -> None:
        raise keras_torch_backend.RouteRejected("the exported program does not load with plain torch (test)")

    monkeypatch.setattr(keras_torch_backend, "export_pt2", reject)
    out = tmp_path / "gru.pt2"  # recurrent: keras-native goes first
    result = convert(str(keras_files["gru_seq"]), ConvertOptions(output=str(out)))
    report = result.report
    assert report.passed and report.route_name == "onnx" and out.is_file()
    assert [(a.route, a.outcome) for a in report.route_attempts] == [("keras-native", "rejected"), ("onnx", "used")]
    assert "does not load with plain torch (test)" in report.route_attempts[0].reason
    with pytest.raises(keras_torch_backend.RouteRejected):  # forced: the rejection is the error
        convert(str(keras_files["gru_seq"]), ConvertOptions(output=str(tmp_path / "x.pt2"), route="keras-native"))
    assert not (tmp_path / "x.pt2").exists()


def test_auto_falls_back_when_verification_fails(keras_files: dict[str, Path], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A route whose result does not verify is reported as such, and nothing of it is published."""
    from converter.conversion import ConvertOptions, convert
    from converter.conversion.routes.onnx_torch import OnnxRoute

    real = OnnxRoute.run

    def strict(self, source, job, ledger, last):  # noqa: ANN001, ANN202
        from dataclasses import replace

        return real(self, source, replace(job, options=replace(job.options, atol=0.0, rtol=0.0)), ledger, last)

    monkeypatch.setattr(OnnxRoute, "run", strict)
    out = tmp_path / "cnn.pt2"
    result = convert(str(keras_files["cnn"]), ConvertOptions(output=str(out), force=True))
    attempts = [(a.route, a.outcome) for a in result.report.route_attempts]
    if attempts[0][1] == "used":
        pytest.skip("the onnx route was bit-exact")
    assert attempts == [("onnx", "failed verification"), ("keras-native", "used")]
    assert "max abs error" in result.report.route_attempts[0].reason
    assert result.report.passed and result.report.route_name == "keras-native"


def test_auto_falls_back_to_keras_native_when_onnx_is_rejected(keras_files: dict[str, Path], tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from converter.errors import UnsupportedError
    from converter.conversion import ConvertOptions, convert
    from converter.conversion.routes.onnx_torch import OnnxRoute

    def reject(*args: object, **kwargs: object) -> None:
        raise UnsupportedError("onnx2torch has no converter for this op (test)")

    monkeypatch.setattr(OnnxRoute, "run", reject)
    result = convert(str(keras_files["mlp"]), ConvertOptions(output=str(tmp_path / "mlp.pt2")))
    assert result.report.passed and result.report.route_name == "keras-native"
    assert [(a.route, a.outcome) for a in result.report.route_attempts] == [("onnx", "rejected"),
                                                                           ("keras-native", "used")]
