"""First divergent layer, in the user's module names, for a deliberately broken conversion."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from converter.cli import main
from converter.parity.localize import keras_module
from converter.parity.verify import VerifyOptions, verify


def test_broken_batchnorm_is_named(artifacts: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, ["verify", str(artifacts["pt2"]), str(artifacts["broken"])])
    assert result.exit_code == 1, result.output
    assert "first divergent layer: bn2 " in result.output
    report = verify(str(artifacts["onnx"]), str(artifacts["broken"]))  # ONNX intermediates as the reference
    assert report.first_divergent.name == "bn2"
    assert [l.name for l in report.layers.layers][:4] == ["conv1", "bn1", "pool", "conv2"]
    assert all(l.passed for l in report.layers.layers[:4])


def test_layers_profile_on_a_passing_run(artifacts: dict[str, Path]) -> None:
    report = verify(str(artifacts["pt2"]), str(artifacts["keras"]), VerifyOptions(layers=True))
    assert report.passed and report.first_divergent is None
    assert [l.name for l in report.layers.layers] == ["conv1", "bn1", "pool", "conv2", "bn2", "fc"]
    assert max(l.max_abs_error for l in report.layers.layers) < 1e-3
    assert verify(str(artifacts["pt2"]), str(artifacts["keras"])).layers is None  # off unless asked or failing


def test_pt2_vs_onnx_layers(artifacts: dict[str, Path]) -> None:
    report = verify(str(artifacts["pt2"]), str(artifacts["onnx"]), VerifyOptions(layers=True))
    assert len(report.layers.layers) == 6 and report.layers.first_divergent is None


def test_no_layers_for_tflite_says_why(artifacts: dict[str, Path]) -> None:
    report = verify(str(artifacts["pt2"]), str(artifacts["tflite"]), VerifyOptions(layers=True))
    assert report.layers.layers == () and "tflite" in report.layers.note


def test_resnet18_nested_names(resnet18: dict[str, Path]) -> None:
    report = verify(str(resnet18["pt2"]), str(resnet18["broken"]))
    assert not report.passed
    first = report.first_divergent
    assert first.name == "layer2.0.bn2", report.format_text()
    names = [l.name for l in report.layers.layers]
    assert "layer1.0.relu (call 2)" in names and "layer2.0.downsample.1" in names
    assert all(l.passed for l in report.layers.layers if l.index < first.index)


def test_keras_layer_names_map_to_modules() -> None:
    modules = {"conv1", "bn1", "pool", "layer1.0.relu", "layer1.0.conv1", "fc"}
    assert keras_module("bn1", modules) == "bn1"
    assert keras_module("pool.max_pool2d", modules) == "pool"
    assert keras_module("conv1.pad", modules) == "conv1"
    assert keras_module("layer1.layer1.0.layer1.0.relu.relu_3", modules) == "layer1.0.relu"
    assert keras_module("layer1.layer1.0.add_65", modules) is None  # a functional op inside a block
    assert keras_module("relu_1", modules) is None
    assert keras_module("fc_1", modules) == "fc"  # a weighted module called a second time
    # crossport's own names: the module path with "_" for "." (every Keras backend accepts them)
    assert keras_module("layer1_0_conv1", modules) == "layer1.0.conv1"
    assert keras_module("layer1_0_conv1_1", modules) == "layer1.0.conv1"
    assert keras_module("pool_max_pool2d", modules) == "pool"
    assert keras_module("conv1_pad", modules) == "conv1"
    assert keras_module("layer1_layer1_0_layer1_0_relu_relu_3", modules) == "layer1.0.relu"
    assert keras_module("layer1_layer1_0_add_65", modules) is None
