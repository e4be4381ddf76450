"""tf2onnx leaves captured plain tensors (Keras 3 Normalization's mean/variance, as in EfficientNet) as ONNX graph
inputs; the adapter turns them into initializers, so the onnx route converts such models."""
from __future__ import annotations

from pathlib import Path


def test_normalization_constants_become_initializers(tmp_path: Path) -> None:
    import numpy as np

    from converter import ConvertOptions, convert
    from converter.frameworks import keras as _keras

    keras = _keras()
    inp = keras.Input((6,))
    x = keras.layers.Normalization(mean=np.arange(6.0), variance=np.arange(1.0, 7.0))(inp)
    keras.Model(inp, keras.layers.Dense(3)(x)).save(str(tmp_path / "norm.keras"))
    result = convert(str(tmp_path / "norm.keras"), ConvertOptions(output=str(tmp_path / "norm.pt2"), route="onnx"))
    assert result.passed, result.report.format_text()
