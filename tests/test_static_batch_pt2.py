"""A ``.pt2`` exported without a dynamic batch: re-exported from ``ep.module()`` with a dynamic batch when that
computes the same, every parameter kept trainable, and a conversion that would train fewer parameters refused
(exit 11, nothing written) unless ``--allow-param-loss``."""
from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from converter.cli import main

pytestmark = pytest.mark.slow


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _tokens_model():
    """ViT-like: a class token expanded to the batch, a position table added, attention reshaped by batch."""
    import torch
    from torch import nn

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Conv2d(3, 8, 4, 4)
            self.cls = nn.Parameter(torch.randn(1, 1, 8))
            self.pos = nn.Parameter(torch.randn(1, 5, 8))
            self.qkv = nn.Linear(8, 24)
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b = x.shape[0]
            t = self.proj(x).flatten(2).transpose(1, 2)
            t = torch.cat([self.cls.expand(b, -1, -1), t], 1) + self.pos
            q, k, v = self.qkv(t).reshape(b, 5, 3, 2, 4).permute(2, 0, 3, 1, 4)
            a = torch.softmax(q @ k.transpose(-1, -2) / 2.0, -1) @ v
            return self.head(a.transpose(1, 2).reshape(b, 5, 8)[:, 0])

    torch.manual_seed(0)
    return Tokens().eval()


def test_static_batch_program_is_reexported_dynamic_and_keeps_parameters(tmp_path: Path) -> None:
    import keras
    import torch

    src = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(_tokens_model(), (torch.randn(2, 3, 8, 8),)), str(src))
    out = tmp_path / "static.keras"
    result = _cli("convert", str(src), "-o", str(out), "--no-manifest")
    assert result.exit_code == 0, result.output
    assert "re-exported from ep.module() with a dynamic batch" in result.output
    assert "trainable parameters: pytorch 683, keras 683" in result.output
    assert keras.models.load_model(str(out)).inputs[0].shape[0] is None


def test_parameter_loss_fails_unless_allowed(tmp_path: Path) -> None:
    import torch
    import torchvision

    torch.manual_seed(0)
    # torchvision's MultiheadAttention reshapes by batch x heads: the batch cannot be made dynamic again, and with
    # a fixed batch the class token and position table would become constants
    vit = torchvision.models.VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                                               hidden_dim=8, mlp_dim=16, num_classes=3).eval()
    src = tmp_path / "vit.pt2"
    torch.export.save(torch.export.export(vit, (torch.randn(2, 3, 16, 16),)), str(src))
    out = tmp_path / "vit.keras"
    result = _cli("convert", str(src), "-o", str(out), "--no-manifest")
    assert result.exit_code == 11, result.output
    assert "class_token" in result.output and "--allow-param-loss" in result.output
    assert not out.exists() and not list(tmp_path.glob(".crossport-*"))
    result = _cli("convert", str(src), "-o", str(out), "--no-manifest", "--allow-param-loss")
    assert result.exit_code == 0, result.output
    assert "accepted with --allow-param-loss" in result.output and out.exists()
