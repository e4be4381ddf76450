"""The --to torch direction of the engine: spellings, analysis, layout remapping, defaults, speed."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from converter.rewrite import RewriteOptions, rewrite_source

TO_TORCH = RewriteOptions(to="torch")
KERAS = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "keras"
BLOCK = '''

class Block{i}(keras.layers.Layer):
    """Generated block {i}."""

    def __init__(self, filters=8, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)
        self.bn = keras.layers.BatchNormalization()
        self.drop = keras.layers.Dropout(0.1)
        self.fc = keras.layers.Dense(filters, activation="relu")

    def call(self, x, training=None):
        y = keras.ops.relu(self.bn(self.conv(x), training=training))  # comment {i}
        y = y + x
        z = keras.ops.mean(y, axis=[1, 2])
        return keras.ops.concatenate([self.fc(self.drop(z)), z], axis=-1)
'''


@pytest.mark.parametrize("imports, base, dense", [
    ("import keras\n", "keras.Model", "keras.layers.Dense"),
    ("from tensorflow import keras\n", "keras.Model", "keras.layers.Dense"),
    ("import tensorflow as tf\n", "tf.keras.Model", "tf.keras.layers.Dense"),
    ("from tensorflow.keras import layers, Model\n", "Model", "layers.Dense"),
    ("from keras import layers\nfrom keras.models import Model\n", "Model", "layers.Dense"),
])
def test_keras_and_tf_keras_spellings_are_one_thing(imports: str, base: str, dense: str) -> None:
    src = f"{imports}\n\nclass M({base}):\n    def __init__(self):\n        super().__init__()\n" \
          f"        self.fc = {dense}(4, activation=\"relu\")\n\n    def call(self, x):\n        return self.fc(x)\n"
    code = rewrite_source(src, TO_TORCH).code
    assert "class M(nn.Module):" in code
    assert "self.fc = nn.Sequential(nn.LazyLinear(4), nn.ReLU())" in code
    assert "def forward(self, x):" in code
    assert "keras" not in code and "tensorflow" not in code


def test_defaults_that_differ_are_explicit() -> None:
    src = ("import keras\n\n\nclass M(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
           "        self.conv = keras.layers.Conv2D(4, 3)\n        self.bn = keras.layers.BatchNormalization()\n"
           "        self.act = keras.layers.LeakyReLU()\n\n    def call(self, x):\n"
           "        return keras.ops.gelu(self.act(self.bn(self.conv(x))))\n")
    code = rewrite_source(src, TO_TORCH).code
    assert "nn.LazyBatchNorm2d(eps=0.001, momentum=0.01)" in code
    assert "nn.LeakyReLU(0.3)" in code
    assert 'F.gelu(self.act(self.bn(self.conv(x))), approximate="tanh")' in code


def test_channel_axis_is_remapped_only_in_image_models() -> None:
    image = ("import keras\n\n\nclass M(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
             "        self.conv = keras.layers.Conv2D(4, 3)\n\n    def call(self, x):\n"
             "        y = self.conv(x)\n        return keras.ops.softmax(keras.ops.concatenate([y, y], axis=-1))\n")
    code = rewrite_source(image, TO_TORCH).code
    assert "torch.softmax(torch.cat([y, y], dim=1), dim=1)" in code
    sequence = image.replace("keras.layers.Conv2D(4, 3)", "keras.layers.Dense(4)")
    code = rewrite_source(sequence, TO_TORCH).code
    assert "torch.softmax(torch.cat([y, y], dim=-1), dim=-1)" in code


def test_unknown_dim_is_marked_not_guessed() -> None:
    src = ("import keras\n\n\nclass M(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
           "        self.conv = keras.layers.Conv2D(4, 3)\n\n    def call(self, x):\n"
           "        return keras.ops.reshape(self.conv(x), (-1, 4, 2))\n")
    result = rewrite_source(src, TO_TORCH)
    assert [t.rule_id for t in result.todos] == ["functions"]
    assert "NCHW element order" in result.todos[0].why


def test_functional_layer_names_follow_keras_automatic_naming() -> None:
    src = (KERAS / "resnet_block.py").read_text()
    code = rewrite_source(src, TO_TORCH).code
    for name in ("conv2d", "conv2d_1", "conv2d_2", "batch_normalization_2", "zero_padding2d", "re_lu"):
        assert f"self.{name} = " in code
    assert "x = x + shortcut" in code


@pytest.mark.parametrize("name", sorted(p.stem for p in KERAS.glob("*.py") if p.stem != "__init__"))
def test_fast_name_resolution_agrees_with_qualified_name_provider(name: str) -> None:
    src = (KERAS / f"{name}.py").read_text()
    assert rewrite_source(src, TO_TORCH).code == rewrite_source(src, TO_TORCH, precise=True).code


def test_generated_2000_line_keras_file_is_fast() -> None:
    parts = ["import keras\n"]
    i = 0
    while sum(p.count("\n") for p in parts) < 2000:
        parts.append(BLOCK.format(i=i))
        i += 1
    src = "".join(parts)
    start = time.perf_counter()
    result = rewrite_source(src, TO_TORCH)
    elapsed = time.perf_counter() - start
    assert result.code.count("class Block") == i and result.code.count("(nn.Module)") == i
    assert result.todos == () and "keras" not in result.code
    # Speed is measured and reported (README section), not asserted: this machine's load varies too much.
    print(f"2000-line Keras file rewritten in {elapsed:.2f}s")
