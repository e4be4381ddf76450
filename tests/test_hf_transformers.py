"""Hugging Face transformers with their default attention (sdpa), built from tiny configs (nothing downloaded),
exported with torch.export and converted to .keras through crossport's builder: the exported masking
(IsNaN / Where after the softmax, GatherND of the padding mask per batch row, And of causal and padding masks)
translates, the batch stays dynamic, and the Keras layers are named after the PyTorch modules."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")


class _Positional:
    """Wraps an HF model so torch.export sees positional tensors (the CLI passes inputs positionally)."""

    @staticmethod
    def make(kind: str):
        import torch
        from torch import nn

        torch.manual_seed(0)
        T = transformers
        if kind == "bert":
            model = T.BertModel(T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                             num_attention_heads=4, intermediate_size=64,
                                             max_position_embeddings=64), add_pooling_layer=False)
        elif kind == "distilbert":
            model = T.DistilBertModel(T.DistilBertConfig(vocab_size=100, dim=32, n_layers=2, n_heads=4,
                                                         hidden_dim=64, max_position_embeddings=64))
        elif kind == "gpt2":
            model = T.GPT2Model(T.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                             bos_token_id=0, eos_token_id=0))
        elif kind == "llama":  # rotary embeddings, RMSNorm, grouped-query attention (repeat_kv), causal
            model = T.LlamaModel(T.LlamaConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                               max_position_embeddings=64))
        else:
            model = T.ViTModel(T.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                           num_attention_heads=4, intermediate_size=64), add_pooling_layer=False)

        class Wrapped(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.m = model

            def forward(self, x, mask=None):
                if kind == "vit":
                    return self.m(pixel_values=x).last_hidden_state
                if kind in ("gpt2", "llama"):  # causal mask only: a padded first token would leave a row with no key
                    return self.m(input_ids=x).last_hidden_state
                return self.m(input_ids=x, attention_mask=mask).last_hidden_state

        return Wrapped().eval()


def _export(tmp_path: Path, kind: str) -> tuple[Path, object]:
    import torch

    wrapped = _Positional.make(kind)
    batch = torch.export.Dim("batch", min=1, max=64)
    if kind == "vit":
        args, dyn = (torch.randn(2, 3, 32, 32),), ({0: batch},)
    elif kind in ("gpt2", "llama"):
        args, dyn = (torch.randint(0, 100, (2, 16)),), ({0: batch},)
    else:
        args = (torch.randint(0, 100, (2, 16)), torch.ones(2, 16, dtype=torch.long))
        dyn = ({0: batch}, {0: batch})
    path = tmp_path / f"{kind}.pt2"
    torch.export.save(torch.export.export(wrapped, args, dynamic_shapes=dyn), str(path))
    return path, wrapped


@pytest.mark.parametrize("kind", ["bert", "distilbert", "gpt2", "llama", "vit"])
def test_default_attention_converts_to_keras(tmp_path: Path, kind: str) -> None:
    import keras
    import torch

    from converter import convert

    path, wrapped = _export(tmp_path, kind)
    out = tmp_path / f"{kind}.keras"
    result = convert(str(path), output=str(out), manifest=False)
    assert result.passed, result.report.format_text()
    model = keras.models.load_model(str(out))
    assert model.inputs[0].shape[0] is None  # the batch stays dynamic
    from converter import contract

    paths = set(contract.read(out).layer_paths.values())  # layer names are these paths with "_" for "."
    assert any(n.startswith(("m.encoder.layer", "m.transformer.layer", "m.h.", "m.layers.")) for n in paths), \
        sorted(paths)
    assert not any(n.startswith("m.m.") for n in paths), sorted(paths)  # paths as named_modules() prints them

    # Beyond crossport's own check: a padded batch of 3 (BERT/DistilBERT: last 5 tokens masked).
    rng = np.random.default_rng(3)
    if kind == "vit":
        feeds = [rng.standard_normal((3, 3, 32, 32)).astype("float32")]
        keras_feeds = [np.transpose(feeds[0], (0, 2, 3, 1))]
    else:
        ids = rng.integers(0, 100, (3, 16)).astype("int64")
        mask = np.ones((3, 16), "int64")
        mask[:, 11:] = 0
        feeds = [ids] if kind in ("gpt2", "llama") else [ids, mask]
        keras_feeds = feeds
    with torch.no_grad():
        expected = wrapped(*[torch.from_numpy(f) for f in feeds]).numpy()
    got = np.asarray(model(keras_feeds if len(keras_feeds) > 1 else keras_feeds[0]))
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-4)


def test_bert_converts_to_tflite(tmp_path: Path) -> None:
    from converter import convert

    path, _ = _export(tmp_path, "bert")
    result = convert(str(path), output=str(tmp_path / "bert.tflite"), manifest=False)
    assert result.passed, result.report.format_text()
