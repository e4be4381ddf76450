"""Real conversion outputs of the fixture models, made once per session with ``converter.convert``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def _convert(source: Path, output: Path, **kw) -> Path:
    from converter import convert

    result = convert(str(source), output=str(output), report_path=f"{output}.crossport.json", **kw)
    assert result.passed, result.report.format_text()
    return output


@pytest.fixture(scope="session")
def artifacts(saved_sources: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """small_cnn as pt2/onnx/keras/SavedModel/tflite (each with its conversion report beside it), two_in_two_out
    as pt2/keras, and a deliberately broken .keras (bn2's epsilon changed after conversion)."""
    d = tmp_path_factory.mktemp("converted")
    pt2 = saved_sources["pt2"]
    out = {"pt2": pt2, "torchscript": saved_sources["torchscript"], "state_dict": saved_sources["state_dict"]}
    out["onnx"] = _convert(pt2, d / "small_cnn.onnx")
    out["keras"] = _convert(pt2, d / "small_cnn.keras")
    out["saved_model"] = _convert(pt2, d / "small_cnn_savedmodel", to="saved_model")
    out["tflite"] = _convert(pt2, d / "small_cnn.tflite")
    out["two.pt2"] = saved_sources["two_in_two_out.pt2"]
    out["two.keras"] = _convert(saved_sources["two_in_two_out.pt2"], d / "two.keras")
    out["two.saved_model"] = _convert(saved_sources["two_in_two_out.pt2"], d / "two_savedmodel", to="saved_model")
    out["broken"] = broken_keras(out["keras"], d / "broken.keras", "bn2")
    return out


def broken_keras(source: Path, target: Path, layer: str) -> Path:
    """Reload a converted model, change one BatchNorm's epsilon, save it with the same conversion report."""
    from converter.frameworks import keras

    model = keras().models.load_model(str(source))
    model.get_layer(layer).epsilon = 1e-1
    model.save(str(target))
    Path(f"{target}.crossport.json").write_text(Path(f"{source}.crossport.json").read_text())
    return target


@pytest.fixture(scope="session")
def resnet18(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """torchvision ResNet-18 (seeded, BatchNorm statistics drawn away from defaults) as .pt2 and converted .keras,
    plus a copy with ``layer2.0.bn2``'s epsilon changed."""
    import torch
    import torchvision

    d = tmp_path_factory.mktemp("resnet18")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # trained-looking statistics: a wrong epsilon shows, activations stay O(1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(model, (torch.randn(2, 3, 32, 32),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(d / "resnet18.pt2"))
    out = {"pt2": d / "resnet18.pt2", "keras": _convert(d / "resnet18.pt2", d / "resnet18.keras")}
    out["broken"] = broken_keras(out["keras"], d / "resnet18_broken.keras", "layer2_0_bn2")  # layer2.0.bn2
    return out
