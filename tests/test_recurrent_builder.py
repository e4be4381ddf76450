"""PyTorch LSTM/GRU -> ONNX LSTM/GRU -> Keras LSTM/GRU layers: gate order, summed LSTM biases, GRU
reset_after, stacked and bidirectional layers, a dynamic batch, trainable weights, and a TFLite file."""
from __future__ import annotations

from pathlib import Path

import pytest


def _text_model(kind: str, layers: int, bidirectional: bool):
    import torch
    from torch import nn

    class TextRNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(40, 8)
            rnn = nn.LSTM if kind == "lstm" else nn.GRU
            self.rnn = rnn(8, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True)
            self.fc = nn.Linear(6 * (2 if bidirectional else 1), 3)

        def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seq, _ = self.rnn(self.emb(tokens))
            return self.fc(seq[:, -1]), seq

    torch.manual_seed(0)
    model = TextRNN().eval()
    with torch.no_grad():
        for p in model.rnn.parameters():
            p.uniform_(-0.8, 0.8)  # far from the default init: a wrong gate order cannot hide
    return model


@pytest.mark.parametrize("kind, layers, bidirectional, target", [
    ("lstm", 1, False, "keras"), ("lstm", 2, True, "keras"), ("gru", 1, False, "keras"), ("gru", 1, True, "keras"),
    ("lstm", 1, True, "tflite"),
])
def test_recurrent_layers_convert(kind: str, layers: int, bidirectional: bool, target: str, tmp_path: Path) -> None:
    import torch

    from converter import ConvertOptions, convert

    model = _text_model(kind, layers, bidirectional)
    tokens = torch.randint(0, 40, (2, 7))
    ep = torch.export.export(model, (tokens,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    out = tmp_path / f"m.{target}"
    result = convert(str(tmp_path / "m.pt2"), ConvertOptions(output=str(out)))
    assert result.passed, result.report.format_text()
    assert "keras 3 (crossport builder)" in result.report.route  # not the onnx2tf fallback
    assert result.report.dynamic_batch
    if target != "keras":
        return
    import keras

    kmodel = keras.models.load_model(str(out))
    rnn_layers = [l for l in kmodel.layers if isinstance(l, (keras.layers.RNN, keras.layers.Bidirectional))]
    assert len(rnn_layers) == layers
    counts = result.report.trainable_params
    directions = 2 if bidirectional else 1
    merged = 4 * 6 * directions * layers if kind == "lstm" else 0  # one Keras LSTM bias for b_ih + b_hh
    assert counts["pytorch"] == counts["keras"] + merged
    if merged:
        assert any("one bias where PyTorch has two" in n for n in result.report.notes)


@pytest.mark.parametrize("steps, unrolled", [(7, True), (80, False)])
def test_short_fixed_sequences_are_unrolled(steps: int, unrolled: bool, tmp_path: Path) -> None:
    """A fixed number of time steps up to BuildOptions.unroll_max_steps becomes an unrolled Keras layer (faster at
    inference, same function, verified); longer ones keep Keras' loop."""
    import keras
    import torch

    from converter import ConvertOptions, convert

    model = _text_model("lstm", 2, False)
    tokens = torch.randint(0, 40, (2, steps))
    ep = torch.export.export(model, (tokens,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    result = convert(str(tmp_path / "m.pt2"), ConvertOptions(output=str(tmp_path / "m.keras")))
    assert result.passed, result.report.format_text()
    kmodel = keras.models.load_model(str(tmp_path / "m.keras"))
    lstm = [layer for layer in kmodel.layers if isinstance(layer, keras.layers.LSTM)]
    assert len(lstm) == 2 and all(layer.unroll is unrolled for layer in lstm)
