"""Module-level code: Keras models built at module level are found (hoisted into builders), and script lines that
would crash on the rewritten model are commented out under a TODO so the file imports. No framework is imported."""
from __future__ import annotations

from converter.rewrite import RewriteOptions, rewrite_source

KERAS2 = '''from keras.models import Sequential
from keras.layers import Dense, Flatten

model = Sequential()
model.add(Flatten(input_shape=(4, 4)))
model.add(Dense(3, activation="relu"))
model.summary()
model.compile(loss="mse",
              optimizer="adam")
'''

FUNCTIONAL = '''import keras
from keras import layers

inputs = keras.Input(shape=(8,))
x = layers.Dense(4, activation="relu")(inputs)
outputs = layers.Dense(2)(x)
encoder = keras.Model(inputs, outputs, name="encoder")
'''

TORCH_SCRIPT = '''import torch
import torch.nn as nn
import torch.optim as optim


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x)


net = Net().to("cpu").eval()
net.apply(print)
optimizer = optim.SGD(net.parameters(), lr=0.1)
print(net)
'''


def test_keras2_module_level_sequential_is_found_and_training_calls_commented() -> None:
    result = rewrite_source(KERAS2, RewriteOptions(to="torch"))
    assert result.model_classes == ("model",)
    assert "def build_model():\n    model = nn.Sequential()\n" in result.code
    assert "\n\nmodel = build_model()\n" in result.code
    assert "# model.compile(loss=\"mse\",\n#               optimizer=\"adam\")" in result.code
    assert [t.rule_id for t in result.todos] == ["keras-training", "keras-training"]
    assert "keras" not in result.code.split("def build_model", 1)[1].split("# crossport")[0]
    assert rewrite_source(result.code, RewriteOptions(to="torch")).code == result.code


def test_module_level_functional_model_bound_to_any_name() -> None:
    result = rewrite_source(FUNCTIONAL, RewriteOptions(to="torch"))
    assert result.model_classes == ("encoder",)
    assert "class Encoder(nn.Module):" in result.code and "\nencoder = build_encoder()\n" in result.code
    assert "self.dense = " in result.code and "self.dense_1 = " in result.code  # Keras' automatic names


def test_layer_names_count_on_across_module_level_models() -> None:
    source = FUNCTIONAL + FUNCTIONAL.replace("inputs", "z_in").replace("encoder", "decoder").split("\n", 2)[2]
    result = rewrite_source(source, RewriteOptions(to="torch"))
    assert result.model_classes == ("encoder", "decoder")
    decoder = result.code.split("class Decoder", 1)[1]
    assert "self.dense_2 = " in decoder and "self.dense_3 = " in decoder  # as Keras names them on import


def test_a_group_whose_tensors_are_used_later_is_left_alone() -> None:
    source = FUNCTIONAL + "y = x\n"
    assert rewrite_source(source, RewriteOptions(to="torch")).model_classes == ()


def test_torch_script_calls_on_a_rewritten_model_are_neutralized() -> None:
    result = rewrite_source(TORCH_SCRIPT, RewriteOptions())
    assert "\nnet = Net()\n" in result.code
    assert "# net.apply(print)" in result.code and "# optimizer = optim.SGD(net.parameters(), lr=0.1)" in result.code
    assert "\nprint(net)\n" in result.code
    assert [t.rule_id for t in result.todos] == ["torch-script"] * 3
    assert rewrite_source(result.code, RewriteOptions()).code == result.code
