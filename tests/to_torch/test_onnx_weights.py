"""ONNX sources: which initializers become trainable parameters (weights by consumer) and which stay constants."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _init(name: str, value: np.ndarray) -> object:
    return numpy_helper.from_array(value, name)


def _handmade() -> object:
    """Conv -> BatchNormalization -> Reshape -> MatMul(transposed kernel) + bias -> * scale -> * mask."""
    rng = np.random.default_rng(0)
    f = np.float32
    inits = [
        _init("conv_w", rng.standard_normal((4, 3, 3, 3)).astype(f)), _init("conv_b", rng.standard_normal(4).astype(f)),
        _init("bn_scale", rng.random(4).astype(f) + 0.5), _init("bn_bias", rng.standard_normal(4).astype(f)),
        _init("bn_mean", rng.standard_normal(4).astype(f) * 0.1), _init("bn_var", rng.random(4).astype(f) + 0.5),
        _init("shape", np.array([-1, 64], np.int64)), _init("fc_w_t", rng.standard_normal((2, 64)).astype(f)),
        _init("fc_b", rng.standard_normal(2).astype(f)), _init("scale", np.array(0.5, f)),
        _init("mask", np.array([[1.0, 0.0]], f)),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w", "conv_b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "bn_scale", "bn_bias", "bn_mean", "bn_var"], ["n"]),
        helper.make_node("Reshape", ["n", "shape"], ["r"]),
        helper.make_node("Transpose", ["fc_w_t"], ["fc_w"], perm=[1, 0]),  # an exporter's transposed kernel
        helper.make_node("MatMul", ["r", "fc_w"], ["m"]),
        helper.make_node("Add", ["m", "fc_b"], ["a"]),
        helper.make_node("Mul", ["a", "scale"], ["s"]),
        helper.make_node("Mul", ["s", "mask"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


WEIGHTS = {"conv_w": 108, "conv_b": 4, "bn_scale": 4, "bn_bias": 4, "fc_w_t": 128, "fc_b": 2}


def test_weight_initializers_by_consumer() -> None:
    from converter.to_torch.onnx_weights import weight_initializers

    assert set(weight_initializers(_handmade())) == set(WEIGHTS)


def test_onnx_source_weights_trainable_statistics_buffers(tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    src = tmp_path / "handmade.onnx"
    onnx.save(_handmade(), str(src))
    out = tmp_path / "handmade.pt2"
    result = convert(str(src), ConvertOptions(output=str(out)))
    assert result.report.passed, result.report.format_text()
    assert result.report.trainable_params["pytorch"] == sum(WEIGHTS.values()), result.report.trainable_params
    reloaded = torch.export.load(str(out)).module()
    assert sum(p.numel() for p in reloaded.parameters() if p.requires_grad) == sum(WEIGHTS.values())
    buffers = dict(reloaded.named_buffers())
    assert any(k.endswith("running_mean") for k in buffers) and any(k.endswith("running_var") for k in buffers)


class _Vision(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return self.fc(torch.flatten(y, 1)) * 0.5


class _Text(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(30, 16)
        self.ln = torch.nn.LayerNorm(16)
        self.gru = torch.nn.GRU(16, 8, batch_first=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        y, _ = self.gru(self.ln(self.emb(ids)))
        return self.head(y[:, -1])


@pytest.mark.parametrize("name", ["vision", "text"])
def test_onnx_source_trainable_count_equals_torch_parameters(name: str, tmp_path: Path) -> None:
    from converter.conversion import ConvertOptions, convert

    torch.manual_seed(0)
    model = (_Vision() if name == "vision" else _Text()).eval()
    if name == "vision":
        with torch.no_grad():
            model.bn.running_mean.uniform_(-0.2, 0.2)
            model.bn.running_var.uniform_(0.5, 1.5)
        example = (torch.randn(2, 3, 8, 8),)
    else:
        example = (torch.randint(0, 30, (2, 6)),)
    src = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, example, str(src), dynamo=True, input_names=["x"],
                      dynamic_shapes=({0: torch.export.Dim("batch")},))
    out = tmp_path / f"{name}.pt2"
    result = convert(str(src), ConvertOptions(output=str(out)))
    report = result.report
    assert report.passed, report.format_text()
    # torch.onnx folds an eval-mode BatchNorm into the Conv before it: count the parameters the ONNX file kept
    kept = {i.name for i in onnx.load(str(src)).graph.initializer}
    expected = sum(p.numel() for n, p in model.named_parameters() if n in kept or name == "text")
    assert report.trainable_params["pytorch"] == expected, report.trainable_params
    assert report.trainable_params["onnx (weights by ONNX consumer)"] == expected
    reloaded = torch.export.load(str(out)).module()
    assert sum(p.numel() for p in reloaded.parameters() if p.requires_grad) == expected
