"""Helpers shared by the rewrite tests (not a test module)."""
from __future__ import annotations

BLOCK = '''

class Block{i}(nn.Module):
    """Generated block {i}."""

    def __init__(self, channels=8):
        super(Block{i}, self).__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.drop = nn.Dropout(0.1)
        self.fc = nn.Linear(channels, channels)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))  # comment {i}
        y = y + x
        z = torch.flatten(F.adaptive_avg_pool2d(y, 1), 1)
        z = self.norm(F.gelu(self.fc(self.drop(z))))
        return torch.cat([z, z], dim=1)
'''


def generated_source(lines: int) -> str:
    head = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
    parts = [head]
    i = 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(BLOCK.format(i=i))
        i += 1
    return "".join(parts)


def heavy_modules_after(args: list[str], cwd: str) -> list[str]:
    """Run the CLI with ``args`` in a fresh interpreter; which of torch/tensorflow/keras it imported."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom click.testing import CliRunner\nfrom converter.cli import main\n"
        f"r = CliRunner().invoke(main, {args!r})\nassert r.exit_code == 0, r.output\n"
        "heavy = sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules)\nprint(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
