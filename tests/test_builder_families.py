"""Model families of issue 18 through ``convert`` to .keras: the bench zoo's small GroupNorm CNN, strided dilated
conv, ceil-mode pooling net and large-output regression net, tiny BERT / GPT-2 (when transformers is installed),
and LSTMs whose initial state is a constant (static batch) or runs over image rows (batch B*H, timm sequencer2d)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.zoo_models import ALL_MODELS, save_torch

CNN_FAMILIES = ["groupnorm_cnn", "dilated_strided_conv", "ceil_pool_net", "large_output_regression"]


@pytest.mark.parametrize("name", CNN_FAMILIES + ["tiny_bert", "tiny_gpt2"])
def test_zoo_family_converts_to_keras(tmp_path: Path, name: str) -> None:
    import keras

    from converter import convert

    if name.startswith("tiny_"):
        pytest.importorskip("transformers")
    source = tmp_path / f"{name}.pt2"
    facts = save_torch(ALL_MODELS[name], source)
    assert facts["dynamic_batch"]
    result = convert(str(source), output=str(tmp_path / f"{name}.keras"), manifest=False)
    assert result.passed, result.report.format_text()
    kinds = {type(layer).__name__ for layer in keras.models.load_model(str(tmp_path / f"{name}.keras")).layers}
    if name == "groupnorm_cnn":
        assert "GroupNormalization" in kinds, kinds


def test_large_outputs_pass_by_scale_but_not_elementwise(tmp_path: Path) -> None:
    """Outputs ~1e4: the default verdict passes; the element-wise view is reported beside it."""
    from converter import convert

    source = tmp_path / "reg.pt2"
    save_torch(ALL_MODELS["large_output_regression"], source)
    result = convert(str(source), output=str(tmp_path / "reg.keras"), manifest=False)
    assert result.passed, result.report.format_text()


def _lstm_text(static_batch: bool, path: Path):
    import torch
    from torch import nn

    class LSTMText(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = nn.Embedding(50, 8)
            self.lstm = nn.LSTM(8, 12, num_layers=2, batch_first=True)
            self.fc = nn.Linear(12, 3)

        def forward(self, tokens):
            out, _ = self.lstm(self.embedding(tokens))
            return self.fc(out[:, -1])

    torch.manual_seed(0)
    model = LSTMText().eval()
    x = torch.randint(0, 10, (2, 7))
    dyn = None if static_batch else ({0: torch.export.Dim("batch", min=1, max=64)},)
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes=dyn), str(path))


@pytest.mark.parametrize("static_batch", [True, False], ids=["static-batch", "dynamic-batch"])
def test_lstm_zero_initial_state_converts_to_keras(tmp_path: Path, static_batch: bool) -> None:
    from converter import convert

    path = tmp_path / "lstm.pt2"
    _lstm_text(static_batch, path)
    result = convert(str(path), output=str(tmp_path / "lstm.keras"), manifest=False)
    assert result.passed, result.report.format_text()


def test_lstm_over_image_rows_uses_its_own_batch(tmp_path: Path) -> None:
    """A bidirectional LSTM over the rows of a feature map runs on B*H sequences; its zero initial state must be
    broadcast to B*H, not to the model's batch B (timm sequencer2d: 'Incompatible shapes: [64,192] vs. [2,192]')."""
    import torch
    from torch import nn

    from converter import convert

    class RowLSTM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.rnn = nn.LSTM(8, 6, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(12, 4)

        def forward(self, x):
            y = self.conv(x).permute(0, 2, 3, 1)  # B, H, W, C
            b, h, w, c = y.shape
            out, _ = self.rnn(y.reshape(b * h, w, c))
            return self.fc(out.reshape(b, h, w, 12).mean(dim=(1, 2)))

    torch.manual_seed(0)
    model = RowLSTM().eval()
    prog = torch.export.export(model, (torch.randn(2, 3, 8, 8),),
                               dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    path = tmp_path / "rows.pt2"
    torch.export.save(prog, str(path))
    result = convert(str(path), output=str(tmp_path / "rows.keras"), manifest=False)
    assert result.passed, result.report.format_text()
    import keras

    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype("float32")
    got = np.asarray(keras.models.load_model(str(tmp_path / "rows.keras"))(np.transpose(x, (0, 2, 3, 1))))
    with torch.no_grad():
        np.testing.assert_allclose(got, model(torch.from_numpy(x)).numpy(), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_is_one_keras_group_normalization(tmp_path: Path, affine: bool) -> None:
    """nn.GroupNorm (exported as Reshape -> InstanceNormalization -> Reshape -> Mul -> Add) becomes one
    GroupNormalization named after the module, holding its weight and bias (none without affine)."""
    import keras
    import torch
    from torch import nn

    from converter import convert

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.GroupNorm(2, 8, eps=1e-3, affine=affine)).eval()
    if affine:
        with torch.no_grad():
            model[1].weight.uniform_(0.5, 1.5)
            model[1].bias.uniform_(-0.5, 0.5)
    path = tmp_path / "gn.pt2"
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 8, 8),),
                                          dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},)), str(path))
    result = convert(str(path), output=str(tmp_path / "gn.keras"), manifest=False)
    assert result.passed, result.report.format_text()
    layers = [layer for layer in keras.models.load_model(str(tmp_path / "gn.keras")).layers
              if isinstance(layer, keras.layers.GroupNormalization)]
    assert len(layers) == 1 and layers[0].groups == 2 and layers[0].name.startswith("1"), layers
    assert len(layers[0].trainable_weights) == (2 if affine else 0)
