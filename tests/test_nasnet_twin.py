"""``benchmarks/nasnet_twin.py`` is NASNet-A itself: a Keras NASNet's weights copied in give the same outputs.

The Keras -> PyTorch bench times the converted NASNetMobile against this twin (issue #19), so a twin that differed
from Keras' architecture (a missed adjust block, another padding) would make that ratio meaningless.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.nasnet_twin import NASNet, load_keras_weights


def _keras_nasnet(size: int, **config: int):  # noqa: ANN202 - a Keras model
    from keras.src.applications.nasnet import NASNet as KerasNASNet

    model = KerasNASNet(input_shape=(size, size, 3), skip_reduction=False, weights=None, classes=10,
                        default_size=size, classifier_activation=None, **config)
    rng = np.random.default_rng(0)
    for w in model.weights:  # BatchNorms that are not the identity, so every one of them shows
        if "moving_variance" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
        elif any(k in w.path for k in ("moving_mean", "beta", "gamma")):
            w.assign(rng.normal(0, 0.2, w.shape).astype("float32") + (1.0 if "gamma" in w.path else 0.0))
    return model


@pytest.mark.parametrize("size", [32, 65])  # even and odd sizes take different stride-2 paddings
def test_same_function_as_keras_nasnet(size: int) -> None:
    config = {"penultimate_filters": 96, "num_blocks": 2, "stem_block_filters": 8}
    keras_model = _keras_nasnet(size, **config)
    twin = NASNet(num_classes=10, softmax=False, **config).eval()
    copied = load_keras_weights(twin, keras_model)
    assert copied == len(keras_model.weights)
    trainable = sum(int(np.prod(w.shape)) for w in keras_model.trainable_weights)
    assert sum(p.numel() for p in twin.parameters()) == trainable
    x = np.random.default_rng(1).normal(size=(2, size, size, 3)).astype("float32")
    expected = keras_model(x, training=False).numpy()
    with torch.no_grad():
        got = twin(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_mobile_defaults_have_keras_nasnetmobile_parameter_count() -> None:
    assert sum(p.numel() for p in NASNet().parameters()) == 5_289_978  # keras NASNetMobile: 5,289,978 trainable
