"""Keras grouped convs through the onnx route (Keras' XLA-compiled conv inlined before tf2onnx) and the fusions of
``converter.to_torch.fuse`` (GELU, Dense bias, channel LayerNorm), on a small seeded ConvNeXt-style model."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import pytest

from tests.to_torch.conftest import keras_reference, plain_torch_check


def _convnext_like(path: Path) -> Path:
    """Stem conv -> two ConvNeXt blocks (depthwise ``Conv2D(groups=C)``, LayerNorm, Dense+GELU, Dense, layer scale,
    residual) with a LayerNorm + grouped stride-2 conv between them, then a pooled head. Every weight random (seeded)
    so that LayerNorm's beta and the Dense biases are not the zeros a fresh model has."""
    from converter.frameworks import keras

    k = keras()
    k.utils.set_random_seed(0)

    def block(x: object, dim: int) -> object:
        y = k.layers.Conv2D(dim, 7, padding="same", groups=dim)(x)
        y = k.layers.LayerNormalization(epsilon=1e-6)(y)
        y = k.layers.Dense(4 * dim, activation="gelu")(y)
        y = k.layers.Dense(dim)(y)
        y = k.layers.Rescaling(0.5)(y)
        return k.layers.Add()([x, y])

    x = inp = k.Input((32, 32, 3))
    x = k.layers.Conv2D(16, 4, strides=4)(x)
    x = block(x, 16)
    x = k.layers.LayerNormalization(epsilon=1e-6)(x)
    x = k.layers.Conv2D(32, 2, strides=2, groups=8)(x)
    x = block(x, 32)
    out = k.layers.Dense(5)(k.layers.LayerNormalization(epsilon=1e-6)(k.layers.GlobalAveragePooling2D()(x)))
    model = k.Model(inp, out)
    rng = np.random.default_rng(1)
    for w in model.weights:
        w.assign((rng.standard_normal(w.shape) * 0.2 + (1.0 if "gamma" in w.path else 0.0)).astype("float32"))
    model.save(str(path))
    return path


def test_grouped_conv_exports_as_onnx_conv_with_group(tmp_path: Path) -> None:
    """Keras runs ``Conv2D(groups>1)`` under ``tf.function(jit_compile=True)``: the ONNX graph has Conv group=C and
    group=8, no StatefulPartitionedCall left for onnxruntime to refuse."""
    import onnx

    from converter.adapters import keras_load
    from converter.adapters.tf_onnx import keras_signature, keras_to_onnx

    model = keras_load.load_keras(str(_convnext_like(tmp_path / "cnx.keras")), trust_code=False)
    keras_to_onnx(model, keras_signature(model, {}), tmp_path / "cnx.onnx")
    nodes = onnx.load(str(tmp_path / "cnx.onnx")).graph.node
    assert not [n.op_type for n in nodes if "PartitionedCall" in n.op_type]
    groups = sorted(a.i for n in nodes if n.op_type == "Conv" for a in n.attribute if a.name == "group")
    assert groups == [1, 8, 16, 32], groups


@pytest.mark.parametrize("nchw", [False, True])
def test_convnext_like_goes_onnx_with_native_kernels(tmp_path: Path, nchw: bool) -> None:
    """The onnx route (not keras-native) verifies; the .pt2 computes GELU, LayerNorm and Dense with PyTorch's own
    ops (no erf / reciprocal / sqrt arithmetic, no separate bias add); the only permutes are the ones torchvision's
    convnext_tiny has (to channels-last around each block's LayerNorm + MLP) plus the NHWC input's view, which
    ``--nchw`` removes; and it matches Keras on a fresh batch."""
    import torch

    from converter.conversion import ConvertOptions, convert

    src = _convnext_like(tmp_path / "cnx.keras")
    out = tmp_path / "cnx.pt2"
    result = convert(str(src), ConvertOptions(output=str(out), nchw=nchw))
    assert result.report.passed and result.report.route_name == "onnx", result.report.format_text()
    # LayerNorm gamma/beta and Dense kernels/biases stay trainable through the fusions
    assert result.report.trainable_params["pytorch"] == result.report.trainable_params["keras"], result.report.notes
    assert result.report.dynamic_batch, result.report.notes
    program = torch.export.load(str(out))
    calls = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert calls.count("aten.gelu.default") == 2 and calls.count("aten.linear.default") == 5, calls
    assert calls.count("aten.layer_norm.default") == 4, calls  # the pooled head's LN too (rank 2)
    assert not {"aten.erf.default", "aten.reciprocal.default", "aten.sqrt.default"} & set(calls), calls
    permutes = sum("permute" in c or "transpose" in c for c in calls)
    assert permutes == 2 * 2 + 2 + (0 if nchw else 1), calls  # 2 per block, 2 around the LN before the downsample
    feeds, outs, _ = keras_reference(src, 3)
    x = torch.from_numpy(feeds[0])
    with torch.inference_mode():
        got = program.module()(x.permute(0, 3, 1, 2).contiguous() if nchw else x).numpy()
    np.testing.assert_allclose(got, outs[0], atol=1e-4, rtol=1e-4)
    if not nchw:  # a fresh interpreter without crossport loads it and trains one step
        plain_torch_check(out, "pt2", feeds, outs, keras_reference(src, 3)[2], tmp_path)


def test_lean_export_of_grouped_convs_is_tf2onnx_own_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the XLA calls inlined the frozen graph calls no function, so the lean export's shortcut
    (``functions_listed_once``) applies; it still gives tf2onnx's own graph."""
    from converter.adapters import keras_load, tf_onnx, tf_onnx_lean
    from tests.to_torch.test_conversion_speed import _canonical

    model = keras_load.load_keras(str(_convnext_like(tmp_path / "cnx.keras")), trust_code=False)
    sigs = tf_onnx.keras_signature(model, {})
    lean = tf_onnx.keras_to_onnx(model, sigs, tmp_path / "lean.onnx")
    monkeypatch.setattr(tf_onnx_lean, "lean_tf2onnx", contextlib.nullcontext)
    plain = tf_onnx.keras_to_onnx(model, sigs, tmp_path / "plain.onnx")
    assert _canonical(lean.path) == _canonical(plain.path)
