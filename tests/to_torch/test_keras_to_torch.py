"""Keras fixtures -> .pt2 / TorchScript through the onnx route (keras-native: test_routes.py): verified, published,
reloaded with plain torch, trained one step."""
from __future__ import annotations

import re

from pathlib import Path

import pytest

from tests.to_torch.conftest import keras_reference, plain_torch_check

FIXTURES = ["cnn", "mlp", "subclassed", "lstm_text", "gru_seq", "two_in_two_out", "transformer_block", "scaled_residual",
            "separable_bn"]


@pytest.mark.parametrize("name", FIXTURES)
def test_fixture_to_pt2(name: str, keras_files: dict[str, Path], tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    out = tmp_path / f"{name}.pt2"
    result = convert(str(keras_files[name]), ConvertOptions(output=str(out), route="onnx"))
    report = result.report
    assert report.passed, report.format_text()
    assert report.route_name == "onnx"
    assert out.is_file() and result.artifact == out
    assert [h.name for h in report.hops] == ["keras -> onnxruntime", "onnxruntime -> pytorch (converted)",
                                             "keras -> pytorch (pt2 file)"]
    assert report.trainable_params["pytorch"] == report.trainable_params["keras"], report.notes
    assert report.dynamic_batch, report.notes  # the Keras batch is None: it stays symbolic in the .pt2
    batch = 3
    feeds, outs, trainable = keras_reference(keras_files[name], batch)
    plain_torch_check(out, "pt2", feeds, outs, trainable, tmp_path)


@pytest.mark.parametrize("kind", ["h5", "saved_model"])
def test_h5_and_saved_model_sources(kind: str, tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert
    from fixtures import keras_models

    model = keras_models.build("cnn")
    src = tmp_path / ("cnn.h5" if kind == "h5" else "cnn_saved_model")
    if kind == "h5":
        model.save(str(src))
    else:
        model.export(str(src), format="tf_saved_model", verbose=False)
    out = tmp_path / "cnn.pt2"
    result = convert(str(src), ConvertOptions(output=str(out)))
    report = result.report
    assert report.passed, report.format_text()
    assert report.source_format == kind and report.dynamic_batch
    source_count = report.trainable_params["keras" if kind == "h5" else "saved_model"]
    assert report.trainable_params["pytorch"] == source_count == 3058
    import numpy as np

    feeds = [np.random.default_rng(1).standard_normal((3, 16, 16, 3)).astype(np.float32)]
    plain_torch_check(out, "pt2", feeds, [np.asarray(model(feeds[0], training=False))], source_count, tmp_path)


def test_cnn_keeps_dynamic_batch_and_nhwc(keras_files: dict[str, Path], tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    result = convert(str(keras_files["cnn"]), ConvertOptions(output=str(tmp_path / "cnn.pt2")))
    assert result.report.dynamic_batch
    assert result.report.inputs[0].shape == (None, 16, 16, 3)
    assert result.report.inputs[0].target_layout == "NHWC"
    assert any("NHWC" in n for n in result.report.notes)


def test_cnn_nchw_folds_the_permutation(keras_files: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np

    from converter.conversion import ConvertOptions, convert

    out = tmp_path / "cnn_nchw.pt2"
    result = convert(str(keras_files["cnn"]), ConvertOptions(output=str(out), nchw=True))
    assert result.report.passed, result.report.format_text()
    assert result.report.inputs[0].target_layout == "NCHW"
    feeds, outs, trainable = keras_reference(keras_files["cnn"], 3)
    nchw = [np.ascontiguousarray(f.transpose(0, 3, 1, 2)) for f in feeds]
    plain_torch_check(out, "pt2", nchw, outs, trainable, tmp_path)


def test_mlp_to_torchscript(keras_files: dict[str, Path], tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    out = tmp_path / "mlp.pt"
    result = convert(str(keras_files["mlp"]), ConvertOptions(output=str(out)))
    assert result.report.target == "torchscript"
    assert result.report.passed, result.report.format_text()
    feeds, outs, trainable = keras_reference(keras_files["mlp"], 2)
    plain_torch_check(out, "torchscript", feeds, outs, trainable, tmp_path)


EMITTED_LAYERS = {
    # Keras numbers automatic layer names per process (conv2d, conv2d_7, ...): "{n}" matches the counter.
    "cnn": ["self.conv2d{n} = nn.Conv2d(3, 8", "nn.BatchNorm2d(8", "self.dense{n} = nn.Linear(in_features=192",
            "nn.MaxPool2d("],
    "lstm_text": ["nn.Embedding(50, 8)", "OnnxLSTM(", "nn.Linear(in_features=16, out_features=3"],
    "transformer_block": ["nn.Linear(in_features=16, out_features=32", "nn.Softmax(dim=-1)"],
    "gru_seq": ["nn.Linear(in_features=8, out_features=4"],
}


@pytest.mark.parametrize("name", sorted(EMITTED_LAYERS))
def test_emit_source(name: str, keras_files: dict[str, Path], tmp_path: Path) -> None:
    """A readable model.py: named nn layers from the Keras layer names, no ATen calls, loadable by plain torch."""
    from converter.conversion import ConvertOptions, convert

    src_dir = tmp_path / f"{name}_src"
    result = convert(str(keras_files[name]), ConvertOptions(output=str(tmp_path / f"{name}.pt2"),
                                                           emit_source=str(src_dir)))
    assert result.report.passed, result.report.format_text()
    assert result.report.route_name == "onnx"  # --emit-source skips keras-native, and says so
    assert result.report.route_attempts[0].outcome == "skipped"
    assert result.report.hops[-1].candidate == "pytorch (emitted model.py)"
    assert (src_dir / "model.py").is_file() and (src_dir / "weights.pt").is_file()
    text = (src_dir / "model.py").read_text()
    code = text.split('"""', 2)[2]
    assert "class Model(nn.Module)" in code and "converter" not in code and "onnx2torch" not in code
    assert "torch.ops.aten" not in code, code
    for snippet in EMITTED_LAYERS[name]:
        assert re.search(re.escape(snippet).replace(re.escape("{n}"), "(_[0-9]+)?"), code), code
    feeds, outs, trainable = keras_reference(keras_files[name], 3)
    plain_torch_check(src_dir, "source", feeds, outs, trainable, tmp_path)


def test_emit_source_nchw(keras_files: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np

    from converter.conversion import ConvertOptions, convert

    src_dir = tmp_path / "cnn_src"
    result = convert(str(keras_files["cnn"]), ConvertOptions(output=str(tmp_path / "cnn.pt2"), nchw=True,
                                                            emit_source=str(src_dir)))
    assert result.report.passed, result.report.format_text()
    code = (src_dir / "model.py").read_text()
    assert "def forward(self, image):" in code and "image.permute" not in code  # the NHWC permutes cancelled
    feeds, outs, trainable = keras_reference(keras_files["cnn"], 2)
    plain_torch_check(src_dir, "source", [np.ascontiguousarray(f.transpose(0, 3, 1, 2)) for f in feeds], outs,
                      trainable, tmp_path)


def test_lambda_layer_needs_trust_flag(tmp_path: Path) -> None:
    from converter.errors import UnsafeLoadError
    from converter.frameworks import keras
    from converter.conversion import ConvertOptions, convert

    k = keras()
    inp = k.Input((4,))
    model = k.Model(inp, k.layers.Lambda(lambda t: t * 2.0)(k.layers.Dense(3)(inp)))
    src = tmp_path / "lambda.keras"
    model.save(str(src))
    with pytest.raises(UnsafeLoadError, match="--trust-code"):
        convert(str(src), ConvertOptions(output=str(tmp_path / "lambda.pt2")))
    assert not (tmp_path / "lambda.pt2").exists()
    result = convert(str(src), ConvertOptions(output=str(tmp_path / "lambda.pt2"), trust_code=True))
    assert result.report.passed, result.report.format_text()


def test_failed_verification_publishes_nothing(keras_files: dict[str, Path], tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    out = tmp_path / "mlp.pt2"
    result = convert(str(keras_files["mlp"]), ConvertOptions(output=str(out), atol=0.0, rtol=0.0))
    if result.report.passed:  # bit-exact everywhere: nothing to test
        pytest.skip("conversion was bit-exact")
    assert result.artifact is None and not out.exists()
    assert not list(tmp_path.glob(".crossport-*"))


def test_cli_keras_to_torch(keras_files: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from converter.cli import main

    out = tmp_path / "two.pt2"
    res = CliRunner().invoke(main, ["convert", str(keras_files["two_in_two_out"]), "--to", "torch", "-o", str(out),
                                    "-q"])
    assert res.exit_code == 0, res.output
    assert out.is_file()


@pytest.mark.slow
@pytest.mark.parametrize("route", ["auto", "keras-native"])
def test_mobilenet_v2_to_pt2(route: str, tmp_path: Path) -> None:
    """keras.applications.MobileNetV2(weights=None) with seeded BN statistics and biases -> .pt2 (auto picks
    the onnx route: no recurrent layers; keras-native forced), loaded by plain torch in a fresh process, trained one
    step."""
    from converter.frameworks import keras
    from converter.conversion import ConvertOptions, convert
    from fixtures.keras_models import randomize_statistics

    k = keras()
    k.utils.set_random_seed(0)
    model = randomize_statistics(k.applications.MobileNetV2(weights=None, input_shape=(96, 96, 3)), 0)
    src = tmp_path / "mobilenet_v2.keras"
    model.save(str(src))
    out = tmp_path / "mobilenet_v2.pt2"
    result = convert(str(src), ConvertOptions(output=str(out), route=route))
    assert result.report.passed, result.report.format_text()
    assert result.report.route_name == ("onnx" if route == "auto" else "keras-native")
    assert result.report.dynamic_batch
    assert result.report.trainable_params["pytorch"] == result.report.trainable_params["keras"]
    feeds, outs, trainable = keras_reference(src, 2)
    plain_torch_check(out, "pt2", feeds, outs, trainable, tmp_path)
