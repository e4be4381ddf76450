"""converter.transfer_weights in the Keras -> PyTorch direction: layouts, gates, and named failures."""
from __future__ import annotations

import numpy as np
import pytest


def _built(model, shape):  # type: ignore[no-untyped-def]
    model(np.zeros(shape, "float32"))
    return model


def test_layouts_and_gates_reproduce_keras_outputs() -> None:
    import keras
    import torch

    from converter.weights import transfer_weights

    keras.backend.clear_session()
    k = keras.Sequential([keras.layers.GRU(6, return_sequences=True), keras.layers.LSTM(5), keras.layers.Dense(3)])
    _built(k, (2, 4, 7))
    t = torch.nn.ModuleDict({"gru": torch.nn.GRU(7, 6, batch_first=True), "lstm": torch.nn.LSTM(6, 5, batch_first=True),
                             "fc": torch.nn.Linear(5, 3)})

    class Net(torch.nn.Sequential):
        def forward(self, x):  # type: ignore[no-untyped-def]
            x = self[0](x)[0]
            return self[2](self[1](x)[0][:, -1])

    net = Net(t["gru"], t["lstm"], t["fc"])
    report = transfer_weights(k, net)
    x = np.random.default_rng(0).normal(size=(2, 4, 7)).astype("float32")
    with torch.no_grad():
        got = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(k(x)), atol=1e-5)
    assert report.keras_variables == len(k.weights)


def test_unmatched_torch_parameter_is_named() -> None:
    import keras
    import torch

    from converter.weights import WeightMappingError, transfer_weights

    keras.backend.clear_session()
    k = _built(keras.Sequential([keras.layers.Dense(3)]), (1, 4))
    t = torch.nn.Sequential(torch.nn.Linear(4, 3))
    t.register_parameter("extra", torch.nn.Parameter(torch.zeros(2)))
    with pytest.raises(WeightMappingError, match="extra"):
        transfer_weights(k, t)


def test_keras_layer_without_torch_counterpart_is_named() -> None:
    import keras
    import torch

    from converter.weights import WeightMappingError, transfer_weights

    keras.backend.clear_session()
    inputs = keras.Input(shape=(4,))
    k = keras.Model(inputs, keras.layers.Dense(2, name="head")(inputs))

    class Wrong(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 2)

    with pytest.raises(WeightMappingError, match="head"):
        transfer_weights(k, Wrong())


def test_gru_reset_before_is_refused_with_the_reason() -> None:
    import keras
    import torch

    from converter.weights import WeightMappingError, transfer_weights

    keras.backend.clear_session()
    k = _built(keras.Sequential([keras.layers.GRU(4, reset_after=False)]), (1, 3, 2))
    with pytest.raises(WeightMappingError, match="reset_after=False"):
        transfer_weights(k, torch.nn.Sequential(torch.nn.GRU(2, 4, batch_first=True)))


def test_unbuilt_keras_model_is_a_shape_error() -> None:
    import keras
    import torch

    from converter.errors import ShapeError
    from converter.weights import transfer_weights

    with pytest.raises(ShapeError, match="not built"):
        transfer_weights(keras.Sequential([keras.layers.Dense(2)]), torch.nn.Sequential(torch.nn.Linear(2, 2)))
