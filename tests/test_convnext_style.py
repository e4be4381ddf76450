"""ConvNeXt's export quirks (tests/fixtures: ConvNeXtStyle): the batch stays dynamic, every parameter stays a
trainable Keras weight under its PyTorch name, and the result verifies."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def test_convnext_style_keeps_batch_parameters_and_names(tmp_path: Path) -> None:
    import torch

    from converter import ConvertOptions, convert
    from fixtures.models import ConvNeXtStyle

    torch.manual_seed(0)
    model = ConvNeXtStyle().eval()
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    out = tmp_path / "m.keras"
    result = convert(str(tmp_path / "m.pt2"), ConvertOptions(output=str(out)))
    assert result.passed, result.report.format_text()
    assert result.report.dynamic_batch  # no Shape -> Range -> Gather over the batch (adaptive pool on a permute)

    import keras

    kmodel = keras.models.load_model(str(out))
    assert kmodel.inputs[0].shape[0] is None
    torch_counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if not name.endswith("layer_scale") else name
        torch_counts[owner] = torch_counts.get(owner, 0) + p.numel()
    keras_counts = {layer.name: sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
                    for layer in kmodel.layers if layer.trainable_weights}
    # zero biases are kept (not dropped as "optional"), equal LayerNorm weights are not merged into one name,
    # and layer_scale is a trainable 1x1 depthwise kernel named after its block.
    assert sum(keras_counts.values()) == sum(torch_counts.values())
    for owner, count in torch_counts.items():
        keras_name = owner.removesuffix(".layer_scale")
        if owner.endswith("layer_scale"):
            scale_layers = [n for n in keras_counts if n.startswith(keras_name) and n not in torch_counts]
            assert scale_layers, f"no Keras layer carries {owner}"
        else:
            assert keras_counts.get(keras_name) == count, (owner, keras_counts)
