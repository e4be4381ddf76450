"""Per-layer parity: each translated layer (one-layer model) rewrites, transfers weights and matches torch.

These are the cases where numbers can differ between frameworks (padding, epsilon, momentum, slopes, gate
order), checked on real torch and real Keras in both layout modes.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from converter.rewrite import RewriteOptions, rewrite_source

CASES = [
    # (layer expression, torch input shape, forward body)
    ("nn.Conv2d(3, 4, 3, stride=2, padding=1)", "2x3x9x8", "return self.layer(x)"),
    ("nn.Conv2d(4, 6, 2, padding=1, groups=2, bias=False)", "2x4x7x7", "return self.layer(x)"),
    ("nn.Conv2d(3, 4, 3, padding=2, dilation=2)", "2x3x8x8", "return self.layer(x)"),
    ("nn.Conv1d(3, 5, 4, stride=2, padding=1)", "2x3x11", "return self.layer(x)"),
    ("nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)", "2x4x5x5", "return self.layer(x)"),
    ("nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1)", "2x4x5x6", "return self.layer(x)"),
    ("nn.MaxPool2d(3, stride=1, padding=1)", "2x3x6x6", "return self.layer(x)"),
    ("nn.MaxPool1d(2)", "2x3x9", "return self.layer(x)"),
    ("nn.AvgPool2d(3, stride=2, padding=1)", "2x3x8x8", "return self.layer(x)"),
    ("nn.AdaptiveAvgPool2d(1)", "2x3x5x5", "return self.layer(x)"),
    ("nn.BatchNorm2d(3, eps=1e-3, momentum=0.3)", "2x3x4x4", "return self.layer(x)"),
    ("nn.BatchNorm1d(5)", "4x5", "return self.layer(x)"),
    ("nn.GroupNorm(2, 4)", "2x4x3x3", "return self.layer(x)"),
    ("nn.LayerNorm([3, 4], eps=1e-6)", "2x5x3x4", "return self.layer(x)"),
    ("nn.Upsample(scale_factor=2, mode='nearest')", "1x2x3x3", "return self.layer(x)"),
    ("nn.LeakyReLU()", "2x7", "return self.layer(x)"),
    ("nn.ELU(alpha=0.5)", "2x7", "return self.layer(x)"),
    ("nn.GELU()", "2x7", "return self.layer(x)"),
    ("nn.ReLU6()", "2x7", "return 4 * self.layer(x)"),
    ("nn.Softmax(dim=1)", "2x3x4x4", "return self.layer(x)"),
    ("nn.LogSoftmax(dim=-1)", "2x7", "return self.layer(x)"),
    ("nn.Conv2d(3, 3, 1)", "2x3x4x4", "return F.softmax(self.layer(x), dim=1) + x.mean(dim=(2, 3), keepdim=True)"),
    ("nn.Conv2d(3, 4, 1)", "2x3x4x4", "return torch.cat([self.layer(x), x], dim=1).sum(dim=1)"),
    ("nn.Conv2d(3, 4, 1)", "2x3x6x6", "return F.interpolate(F.avg_pool2d(self.layer(x), 2), scale_factor=2, mode='nearest')"),
    ("nn.Conv2d(3, 4, 1)", "2x3x6x6", "return F.leaky_relu(F.max_pool2d(self.layer(x), 2, 2), 0.2).size(1) * x"),
    ("nn.Linear(6, 4)", "2x6", "return F.gelu(self.layer(x), approximate='tanh') + F.elu(x[:, :4])"),
    ("nn.Conv2d(3, 4, 1)", "2x3x5x6", "return F.pad(self.layer(x), (1, 2, 0, 3)) + F.pad(x, [1, 1, 2, 1], mode='reflect').mean()"),
    ("nn.GRU(4, 6, batch_first=True)", "2x5x4", "return self.layer(x)[0]"),
    ("nn.Embedding(11, 4)", "2x6", "return self.layer(x).sum(dim=1)"),
    ("nn.Conv2d(3, 4, 1)", "2x3x5x5", "return torch.max(self.layer(x), 1, keepdim=True)[0] * x.min(dim=1, keepdim=True).values"),
    ("nn.Linear(6, 4)", "2x3x6", "v, _ = torch.max(self.layer(x), dim=1)\n        return v + x.amax(dim=(1, 2)).unsqueeze(1)"),
    ("nn.LSTM(4, 6, batch_first=True)", "2x5x4", "out, _ = self.layer(x)\n        return out"),
    ("nn.LSTM(4, 6, batch_first=True)", "2x5x4", "_, (h, c) = self.layer(x)\n        return h[-1] * c.squeeze(0)"),
    ("nn.GRU(4, 6, batch_first=True)", "2x5x4", "out, h = self.layer(x)\n        return out.mean(dim=1) + h[0]"),
    ("nn.MultiheadAttention(8, 2, batch_first=True, bias=False)", "2x3x8", "return self.layer(x, x, x)[0]"),
]


#: Keras 3.15.1's TensorFlow ``keras.ops.add`` turns ``conv_out + bias.reshape(1, C, 1, 1)`` into
#: ``tf.nn.bias_add(..., data_format="NHWC")`` whenever the last axis happens to equal C, so a channels_first
#: Conv with bias is wrong on TensorFlow exactly when width == filters (these cases; they pass on KERAS_BACKEND=torch).
KERAS_TF_BIAS_ADD_BUG = {0, 3, 22}


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("layer, shape, body", CASES, ids=[f"{i}-{c[0].split('(')[0]}" for i, c in enumerate(CASES)])
def test_layer_parity(tmp_path: Path, layer: str, shape: str, body: str, layout: str) -> None:
    import os

    from converter.rewrite.verify import VerifyOptions, format_report, verify_rewrite
    from converter.input_shapes import unnamed_shapes

    index = next(i for i, c in enumerate(CASES) if c == (layer, shape, body))
    if layout == "channels_first" and index in KERAS_TF_BIAS_ADD_BUG and os.environ.get("KERAS_BACKEND") == "tensorflow":
        pytest.xfail("Keras TF keras.ops.add picks NHWC bias_add when width == channels (upstream bug)")

    src = (
        "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "class M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        f"        self.layer = {layer}\n\n    def forward(self, x):\n        {body}\n"
    )
    path = tmp_path / "m.py"
    path.write_text(src)
    result = rewrite_source(src, RewriteOptions(layout=layout), filename=str(path))
    assert result.todos == (), result.code
    report = verify_rewrite(path, result, VerifyOptions(unnamed_shapes([shape])))
    assert report.passed, result.code + "\n" + format_report(report)
