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
