"""What the TF converter folds, folded here too: an inference batch norm into the preceding convolution / dense
layer's weights, and a ReLU / ReLU6 into the producing operator's fused activation (fewer operators, no extra
pass over the activations; ResNet-18 has 20 conv -> batch-norm pairs)."""
from __future__ import annotations

from typing import Any

import numpy as np

from converter.tflite_writer.context import WriteContext, weights


def bn_affine(op: Any) -> tuple[np.ndarray, np.ndarray]:
    """Inference batch norm as ``x * scale + shift`` with ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - mean * scale`` (``tf.nn.batch_normalization``'s own arithmetic)."""
    mean, var = weights(op.moving_mean), weights(op.moving_variance)
    scale = (1.0 / np.sqrt(var + np.float32(op.epsilon))).astype(np.float32)
    if op.scale:
        scale = scale * weights(op.gamma)
    shift = -mean * scale
    if op.center:
        shift = shift + weights(op.beta)
    return scale.astype(np.float32), shift.astype(np.float32)


def _last_axis_bn(node: Any) -> bool:
    op = node.operation
    if type(op).__name__ != "BatchNormalization":
        return False
    rank = len(node.input_tensors[0].shape)
    axes = [op.axis] if isinstance(op.axis, int) else list(op.axis)
    return [a % rank for a in axes] == [rank - 1]


def relu_kind(node: Any) -> str | None:
    """``RELU`` / ``RELU6`` when ``node`` is exactly that activation, else None."""
    op = node.operation
    kind = type(op).__name__
    if kind == "ReLU" and float(op.negative_slope) == 0.0 and float(op.threshold) == 0.0:
        return "RELU" if op.max_value is None else "RELU6" if float(op.max_value) == 6.0 else None
    if kind == "Activation":
        return {"relu": "RELU", "relu6": "RELU6"}.get(op.get_config().get("activation"))
    return None


def fused_relu(ctx: WriteContext, kt: Any) -> tuple[str, Any]:
    """(fused activation name, the Keras tensor the operator now computes)."""
    user = ctx.absorb(kt, lambda n: relu_kind(n) is not None)
    return (relu_kind(user), user.outputs[0]) if user is not None else ("NONE", kt)


def epilogue(ctx: WriteContext, kt: Any, own_activation: str) -> tuple[np.ndarray | None, np.ndarray | None, str, Any]:
    """For a linear operator producing ``kt``: (scale, shift) of a batch norm to fold into its weights (or None),
    the fused activation, and the Keras tensor its output stands for."""
    if own_activation != "NONE":
        return None, None, own_activation, kt
    scale = shift = None
    bn = ctx.absorb(kt, _last_axis_bn)
    if bn is not None:
        scale, shift = bn_affine(bn.operation)
        kt = bn.outputs[0]
    act, kt = fused_relu(ctx, kt)
    return scale, shift, act, kt
