"""Engine behaviour: name resolution across import spellings, comments, TODOs, non-model code, errors."""
from __future__ import annotations

import pytest

from converter.rewrite import RewriteOptions, rewrite_source
from converter.rewrite.errors import SourceSyntaxError

BODY = """

class Net({base}):
    def __init__(self):
        super().__init__()
        # a comment that must survive
        self.fc = {linear}(4, 2)  # trailing comment

    def forward(self, x):
        \"\"\"Docstrings survive too.\"\"\"
        return {relu}(self.fc(x))
"""

SPELLINGS = [
    ("import torch.nn as nn\nimport torch.nn.functional as F", "nn.Module", "nn.Linear", "F.relu"),
    ("import torch", "torch.nn.Module", "torch.nn.Linear", "torch.relu"),
    ("from torch import nn\nfrom torch.nn import functional as F", "nn.Module", "nn.Linear", "F.relu"),
    ("from torch.nn import Linear, Module\nfrom torch.nn.functional import relu", "Module", "Linear", "relu"),
]


@pytest.mark.parametrize("imports, base, linear, relu", SPELLINGS)
def test_import_spellings_are_one_thing(imports: str, base: str, linear: str, relu: str) -> None:
    src = imports + BODY.format(base=base, linear=linear, relu=relu)
    out = rewrite_source(src).code
    assert out == "import keras" + BODY.format(base="keras.Model", linear="keras.layers.Dense", relu="keras.ops.relu") \
        .replace("(4, 2)", "(2)").replace("def __init__(self):\n        super().__init__()",
                                          "def __init__(self, **kwargs):\n        super().__init__(**kwargs)") \
        .replace("def forward(", "def call(")


def test_todo_is_marked_listed_and_idempotent() -> None:
    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)\n")
    result = rewrite_source(src)
    assert "# crossport: TODO(pooling):" in result.code
    assert [t.rule_id for t in result.todos] == ["pooling"]
    assert result.todos[0].line == result.code.splitlines().index("        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)") + 1
    assert "import torch.nn as nn" in result.code  # still used by the marked line
    assert rewrite_source(result.code).code == result.code


def test_non_model_code_is_left_alone_and_listed() -> None:
    src = ("import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n    def forward(self, x):\n"
           "        return torch.relu(x)\n\n\ndef train(model, opt):\n    loss = model(torch.ones(1)).sum()\n"
           "    loss.backward()\n    opt.step()\n\n\nx = torch.zeros(3)\n")
    result = rewrite_source(src)
    assert result.code.endswith(src.split("def train", 1)[1]) and "def train" in result.code
    assert [what for _, what in result.not_rewritten] == ["def train", "x = torch.zeros(3)"]
    assert "import torch\n" in result.code


def test_no_model_class_changes_nothing() -> None:
    src = "import numpy as np\n\n\ndef f(x):\n    return np.mean(x)\n"
    result = rewrite_source(src)
    assert result.code == src and result.model_classes == ()


def test_unparsable_source_raises_a_crossport_error() -> None:
    with pytest.raises(SourceSyntaxError) as info:
        rewrite_source("class Net(:\n", filename="bad.py")
    assert info.value.exit_code == 4 and "bad.py" in str(info.value)


def test_channels_last_remaps_channel_dims_only_in_image_models() -> None:
    src = ("import torch\nimport torch.nn as nn\n\n\nclass Img(nn.Module):\n    def __init__(self):\n"
           "        super().__init__()\n        self.conv = nn.Conv2d(3, 3, 1)\n\n    def forward(self, x):\n"
           "        return torch.cat([self.conv(x), x], dim=1).mean(dim=(2, 3))\n\n\n"
           "class Seq(nn.Module):\n    def forward(self, x):\n        return torch.cat([x, x], dim=1)\n")
    out = rewrite_source(src, RewriteOptions(layout="channels_last")).code
    assert "keras.ops.mean(keras.ops.concatenate([self.conv(x), x], axis=-1), axis=(1, 2))" in out
    assert "keras.ops.concatenate([x, x], axis=1)" in out


def test_defaults_that_differ_are_explicit() -> None:
    src = ("import torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.bn = nn.BatchNorm2d(4, momentum=0.2)\n        self.ln = nn.LayerNorm(4)\n"
           "        self.act = nn.LeakyReLU()\n        self.sm = nn.Softmax(dim=-1)\n")
    out = rewrite_source(src, RewriteOptions(layout="channels_first")).code
    assert "BatchNormalization(axis=1, epsilon=1e-05, momentum=0.8)" in out
    assert "LayerNormalization(axis=-1, epsilon=1e-05)" in out
    assert "LeakyReLU(negative_slope=0.01)" in out
    assert "Softmax(axis=-1)" in out


def test_generated_2000_line_file_is_fast() -> None:
    import time

    from tests_rewrite_support import generated_source

    src = generated_source(2000)
    start = time.perf_counter()
    result = rewrite_source(src)
    elapsed = time.perf_counter() - start
    assert len(src.splitlines()) >= 2000 and result.todos == ()
    # Speed is measured in benchmarks/ (README), not asserted here; elapsed is only reported.


def test_rebound_alias_falls_back_to_full_scope_analysis() -> None:
    src = ("import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "        self.fc = nn.Linear(2, 3)\n\n\ndef helper(factory):\n    nn = factory\n    return nn.Linear(1)\n")
    out = rewrite_source(src).code
    assert "self.fc = keras.layers.Dense(3)" in out
    assert "    nn = factory\n    return nn.Linear(1)\n" in out  # the local `nn` is not torch.nn


def test_fast_name_resolution_agrees_with_qualified_name_provider() -> None:
    """The import-table resolver must give exactly what libcst's QualifiedNameProvider gives."""
    from pathlib import Path

    from rules import discover_rules

    fixtures = sorted((Path(__file__).resolve().parents[2] / "fixtures" / "sources").glob("*.py"))
    cases = [(p.read_text(), "channels_last") for p in fixtures]
    cases += [(rule.EXAMPLES[0].before, rule.EXAMPLES[0].layout) for rule in discover_rules("keras")]
    for src, layout in cases:
        options = RewriteOptions(layout=layout)
        assert rewrite_source(src, options).code == rewrite_source(src, options, precise=True).code
