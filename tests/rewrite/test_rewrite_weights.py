"""transfer_weights: per-layer transforms by attribute path; anything unmatched is an error that names it."""
from __future__ import annotations

import numpy as np
import pytest


def _models():
    import keras
    import torch

    class TorchNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3)
            self.fc = torch.nn.Linear(3 * 4 * 4, 5)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x), 1))

    class KerasNet(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = keras.layers.Conv2D(3, 3)
            self.fc = keras.layers.Dense(5)

        def call(self, x):
            y = self.conv(x)
            return self.fc(keras.ops.reshape(y, (keras.ops.shape(y)[0], -1)))

    return torch, TorchNet(), KerasNet()


def test_channels_last_permutes_the_dense_after_flatten() -> None:
    from converter.weights import flatten_inputs, transfer_weights

    torch, t, k = _models()
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32)
    k(np.moveaxis(x, 1, -1))
    flat = flatten_inputs(t, [torch.from_numpy(x)])
    assert flat == {"fc": (3, 4, 4)}
    report = transfer_weights(t, k, layout="channels_last", flatten_inputs=flat)
    assert report.permuted_dense == ("fc",)
    with torch.no_grad():
        expected = t(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.asarray(k(np.moveaxis(x, 1, -1))), expected, atol=1e-5)


def test_unmatched_torch_parameter_is_named() -> None:
    from converter.weights import WeightMappingError, transfer_weights

    torch, t, k = _models()
    t.extra = torch.nn.Parameter(torch.zeros(2))
    k(np.zeros((1, 6, 6, 2), np.float32))
    with pytest.raises(WeightMappingError, match="extra"):
        transfer_weights(t, k, layout="channels_last")


def test_unmatched_keras_variable_is_named() -> None:
    import keras

    from converter.weights import WeightMappingError, transfer_weights

    torch, t, k = _models()
    k.more = keras.layers.Dense(2)
    k(np.zeros((1, 6, 6, 2), np.float32))
    k.more(np.zeros((1, 3), np.float32))
    with pytest.raises(WeightMappingError, match="dense"):
        transfer_weights(t, k, layout="channels_last")


def test_unbuilt_keras_model_is_a_shape_error() -> None:
    from converter.errors import ShapeError
    from converter.weights import transfer_weights

    _, t, k = _models()
    with pytest.raises(ShapeError):
        transfer_weights(t, k)


KERAS_SIDE = {
    "mnist_cnn": ("Net", (2, 1, 28, 28)), "lenet_sequential": ("LeNet", (2, 1, 28, 28)),
    "vgg_blocks": ("VGG", (2, 3, 32, 32)), "resnet_block": ("TinyResNet", (2, 3, 16, 16)),
    "transformer_encoder": ("TinyTransformer", (2, 6, 32)), "embedding_lstm": ("LSTMClassifier", (2, 12)),
    "gru_seq": ("GRUTagger", (2, 5, 8)), "modulelist_param": ("GatedResidualMLP", (4, 16)),
    "unet": ("TinyUNet", (1, 1, 16, 16)), "mlp_layernorm": ("MLP", (4, 20)),
}


@pytest.mark.parametrize("name", sorted(KERAS_SIDE))
def test_state_dict_into_keras_without_the_torch_class(name: str) -> None:
    """The Keras-driven mapping (transfer without --source) gives the same numbers as the torch model."""
    from pathlib import Path

    import torch

    from converter.parity.compare import Tolerance, compare_arrays
    from converter.rewrite import RewriteOptions, rewrite_source
    from converter.rewrite.loading import build, import_code, import_file
    from converter.weights.from_state_dict import keras_flatten_inputs, load_state_dict_into_keras

    path = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / f"{name}.py"
    class_name, shape = KERAS_SIDE[name]
    result = rewrite_source(path.read_text(), RewriteOptions(layout="channels_last"))
    torch.manual_seed(0)
    original = build(import_file(path), class_name, {}, name)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, size=shape) if name == "embedding_lstm" else rng.standard_normal(shape).astype(np.float32)
    original.train()
    with torch.no_grad():
        original(torch.from_numpy(x))  # materialise Lazy modules and move BatchNorm statistics off their init
    original.eval()
    with torch.no_grad():
        expected = original(torch.from_numpy(x)).numpy()
    image = class_name in result.spatial_classes
    kx = np.moveaxis(x, 1, -1) if image and x.ndim >= 3 else x
    model = build(import_code(result.code, name), class_name, {}, name)
    model(kx, training=False)
    flat = keras_flatten_inputs(model, [kx])
    load_state_dict_into_keras(original.state_dict(), model, "channels_last", flat)
    got = np.asarray(model(kx, training=False))
    if image and got.ndim == x.ndim:
        got = np.moveaxis(got, -1, 1)
    report = compare_arrays(name, got, expected, Tolerance())
    assert report.passed, report
