"""Export quirks of real architectures, in miniature: ConvNeXt (fixtures.models.ConvNeXtStyle) and torchvision's
VisionTransformer. The batch stays dynamic, parameters stay trainable under their PyTorch names, results verify."""
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
        keras_name = owner.removesuffix(".layer_scale").replace(".", "_")
        if owner.endswith("layer_scale"):
            owners = {o.replace(".", "_") for o in torch_counts}
            scale_layers = [n for n in keras_counts if n.startswith(keras_name) and n not in owners]
            assert scale_layers, f"no Keras layer carries {owner}"
        else:
            assert keras_counts.get(keras_name) == count, (owner, keras_counts)


def test_vision_transformer_keeps_a_dynamic_batch(tmp_path: Path) -> None:
    """nn.MultiheadAttention folds the heads into the batch axis (B*H -> B, H) and the class token is expanded
    to the batch: both must follow the batch at run time, checked at batch 2 and 3 by verification."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    from converter import ConvertOptions, convert

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=5).eval()
    with torch.no_grad():
        for p in model.parameters():  # torchvision zero-initialises the head: outputs would be trivially 0
            p.normal_(0.0, 0.3)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).abs().max() > 0.1
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "vit.pt2"))
    result = convert(str(tmp_path / "vit.pt2"), ConvertOptions(output=str(tmp_path / "vit.keras")))
    assert result.passed, result.report.format_text()
    assert result.report.dynamic_batch
    assert {s["shapes"][0][0] for s in result.report.input_sets} == {2, 3}
    # class_token and encoder.pos_embedding stay trainable (Embedding tables), so the counts agree
    counts = result.report.trainable_params
    assert counts["pytorch"] == counts["keras"] == sum(p.numel() for p in model.parameters())


def test_folded_weight_transposes_are_written_block_by_block(tmp_path: Path, monkeypatch) -> None:
    """A Linear on a 3-D input exports as MatMul with the weight's Transpose folded into a transposed numpy view;
    the save writes it through small contiguous blocks (``torch_onnx._transposed_weights_written_in_blocks``) -- same bytes as a
    plain transpose, checked here with blocks of 2 rows so a block boundary falls inside the weight."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from converter.adapters import torch_onnx

    monkeypatch.setattr(torch_onnx, "_BLOCK_BYTES", 2 * 37 * 4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(37, 11), torch.nn.GELU(), torch.nn.Linear(11, 37)).eval()
    x = torch.randn(2, 5, 37)
    path = tmp_path / "m.onnx"
    torch_onnx.export(model, (x,), path, n_outputs=1, external_data=True)
    assert (tmp_path / "m.onnx.data").is_file()
    proto = onnx.load(str(path))
    weights = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    first = model[0].weight.detach().numpy()
    assert any(w.shape == first.T.shape and np.array_equal(w, first.T) for w in weights)  # written transposed
    got = ort.InferenceSession(str(path)).run(None, {proto.graph.input[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_blockwise_weight_writes_to_a_buffer_in_memory_too() -> None:
    """``tofile`` on something without a file descriptor (what onnx_ir's own base class allows) writes the same
    bytes through ``write``."""
    import io

    import onnx_ir as ir

    from converter.adapters import torch_onnx

    weight = np.arange(12 * 7, dtype=np.float32).reshape(12, 7).T  # a transposed view, as constant folding leaves
    model = ir.Model(ir.Graph([], [], nodes=[], initializers=[ir.Value(name="w", const_value=ir.Tensor(weight))]),
                     ir_version=10)
    torch_onnx._transposed_weights_written_in_blocks(model)
    tensor = model.graph.initializers["w"].const_value
    assert type(tensor).__name__ == "_BlockwiseTensor"
    buffer = io.BytesIO()
    tensor.tofile(buffer)
    assert buffer.getvalue() == np.ascontiguousarray(weight).tobytes()
