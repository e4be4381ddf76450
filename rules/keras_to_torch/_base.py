"""What the Keras -> PyTorch rules share: the call-rule base, activation names, axis remapping, example sources.

The emitted code is channels-first (NCHW) PyTorch; a Keras model "is spatial" when it builds conv/pool layers, and
then its channel axis ``-1`` is torch's ``dim=1``. Sizes Keras infers come from ``--input-shape`` facts (one run of
the user's code); without them the rules emit ``nn.Lazy*`` where PyTorch has it and TODO-mark the rest.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import libcst as cst

from rules.base import CallRule, targeted
from rules.cst_tools import Unbindable, arg, bind_args, call, expr, literal
from rules.keras_to_torch.initializers import with_initializers

#: Keyword arguments that only affect training from scratch or naming; the weights are transferred anyway.
IGNORED_KWARGS = frozenset({"name", "input_shape", "input_dim", "batch_input_shape", "dtype", "trainable",
                            "kernel_initializer", "bias_initializer", "embeddings_initializer",
                            "recurrent_initializer", "gamma_initializer", "beta_initializer",
                            "moving_mean_initializer", "moving_variance_initializer", "seed"})
#: ... and the ones that change the training objective: a rule that meets one marks it.
TRAINING_KWARGS = frozenset({"kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint",
                             "bias_constraint", "embeddings_regularizer", "recurrent_regularizer",
                             "gamma_regularizer", "beta_regularizer", "depthwise_regularizer",
                             "pointwise_regularizer"})

#: Keras activation name -> torch module source ("{dim}" is filled with the channel dim).
ACTIVATIONS = {
    "relu": "nn.ReLU()", "sigmoid": "nn.Sigmoid()", "tanh": "nn.Tanh()", "gelu": "nn.GELU()", "silu": "nn.SiLU()",
    "swish": "nn.SiLU()", "elu": "nn.ELU()", "selu": "nn.SELU()", "softplus": "nn.Softplus()",
    "softsign": "nn.Softsign()", "relu6": "nn.ReLU6()", "leaky_relu": "nn.LeakyReLU(0.2)",
    "hard_sigmoid": "nn.Hardsigmoid()", "mish": "nn.Mish()", "softmax": "nn.Softmax(dim={dim})",
    "log_softmax": "nn.LogSoftmax(dim={dim})",
}
ACTIVATION_MODULES = frozenset(v.split("(")[0] for v in ACTIVATIONS.values())


class KerasCallRule(CallRule):
    """A rule that rewrites Keras constructors/functions; sees the original call for facts and sites."""

    _original: cst.Call | None = None
    NEEDS: ClassVar[tuple[str, ...]] = ("torch.nn",)

    @targeted  # ``_original`` is only read by the target methods this handler calls
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        self._original = original_node
        result = super().leave_Call(original_node, updated_node)
        if result is updated_node:
            return result
        return with_initializers(original_node, result, self.ctx.qualified_name, self.todo)

    def add_imports(self) -> None:
        for module in self.NEEDS:
            self.ctx.add_import(module, {"torch.nn": "nn", "torch.nn.functional": "F"}.get(module))

    # -- facts and layout ---------------------------------------------------------------------------------
    def input_shape(self) -> tuple[int | None, ...] | None:
        """The Keras input shape (batch first, channels last) recorded for this layer, or None."""
        if self._original is None:
            return None
        shape = self.ctx.facts_for(self._original)
        if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
            shape = shape[0]  # a layer called on several tensors: the first one's shape
        return tuple(shape) if isinstance(shape, (list, tuple)) else None

    def is_site(self) -> bool:
        """Whether the call builds a layer of the model (an attribute, a Sequential entry, a functional layer)."""
        return self._original is not None and id(self._original) in self.ctx.analysis.sites

    def in_size(self) -> int | None:
        shape = self.input_shape()
        return shape[-1] if shape and isinstance(shape[-1], int) else None

    def spatial(self) -> bool:
        info = self.ctx.current_model()
        return info is not None and info.spatial

    def channel_dim(self) -> int:
        """torch dim of Keras' channel axis -1: 1 on NCHW tensors (spatial models), else -1."""
        return 1 if self.spatial() else -1

    def torch_dim(self, axis: object, rank: int | None) -> int | None:
        """The torch dim for Keras ``axis`` on a tensor of ``rank`` (None when it cannot be established)."""
        if isinstance(axis, bool) or not isinstance(axis, int):
            return None
        if not self.spatial():
            return axis
        if axis == 0:
            return 0
        if axis == -1:
            return 1
        if rank is None:
            return None
        a = axis % rank
        return 1 if a == rank - 1 else a + 1

    # -- arguments ------------------------------------------------------------------------------------------
    def bind(self, node: cst.Call, params: Sequence[str]) -> dict[str, cst.BaseExpression]:
        """Bind Keras arguments; drop naming/initializer kwargs, refuse the ones that change training."""
        kept = []
        for a in node.args:
            key = a.keyword.value if a.keyword is not None else None
            if key in IGNORED_KWARGS:
                continue
            if key in TRAINING_KWARGS and literal(a.value, "?") is not None:
                raise Unbindable(f"{key} changes training; add it to the torch loss/optimizer by hand")
            kept.append(a)
        return bind_args(node.with_changes(args=kept), params)

    def activation(self, module: cst.BaseExpression, value: cst.BaseExpression | None) -> cst.BaseExpression | None:
        """``activation=`` fused into a layer -> ``nn.Sequential(layer, activation)``; None (marked) if unknown."""
        if value is None:
            return module
        act = activation_module(value, self.ctx.qualified_name, self.channel_dim())
        if act is False and literal(value, None) is None and self._original is not None:
            # ``activation=activation`` from a variable: the probe (--input-shape) saw which function it is.
            seen = self.ctx.facts_for(self._original, "#activation")
            if isinstance(seen, str):
                act = activation_module(cst.SimpleString(repr(seen)), self.ctx.qualified_name, self.channel_dim())
        if act is False:
            self.todo(f"activation={cst.Module(body=[]).code_for_node(value)} has no known torch module")
            return None
        if act is None:
            return module
        return call("nn.Sequential", arg(module), arg(act))

    def flag(self, a: dict[str, cst.BaseExpression], key: str, default: object) -> object:
        return literal(a[key], "?") if key in a else default


def activation_module(value: cst.BaseExpression, qname, channel_dim: int):  # type: ignore[no-untyped-def]
    """torch module for a Keras activation spec (``"relu"``, ``keras.activations.relu``, ``tf.nn.relu``);
    None for none/linear, False when there is no known equivalent."""
    if isinstance(value, cst.Name) and value.value == "None":
        return None
    name = literal(value, None)
    if name is None and isinstance(value, (cst.Name, cst.Attribute)):
        q = qname(value) or ""
        if q.startswith(("keras.activations.", "keras.ops.", "tensorflow.")):
            name = q.rsplit(".", 1)[-1]
    if name == "linear":
        return None
    if not isinstance(name, str) or name not in ACTIVATIONS:
        return False
    return expr(ACTIVATIONS[name].format(dim=channel_dim))


def padding_value(values: Sequence[int]) -> object:
    """An int when every dim pads the same, else a tuple."""
    return values[0] if len(set(values)) == 1 else tuple(values)


def same_padding(size: int | None, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int] | None:
    """TF/Keras 'same' padding (before, after) for one dim; None when the input size is unknown."""
    if stride == 1:
        total = dilation * (kernel - 1)
    elif size is None:
        return None
    else:
        out = -(-size // stride)
        total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


KERAS_IMPORTS = "import keras\nfrom keras import layers\n"
TORCH_HEAD = "import torch.nn as nn\n"


def keras_src(init: tuple[str, ...] = (), call_body: tuple[str, ...] = (), *, torch: bool = False,
              imports: str = KERAS_IMPORTS, base: str = "keras.Model", head: str = TORCH_HEAD) -> str:
    """A small subclassed Keras model for rule examples; ``torch=True`` gives the expected output shape of it."""
    text = imports + (head if torch else "") + f"\n\nclass M({base}):\n"
    text += "    def __init__(self):\n        super().__init__()\n"
    text += "".join(f"        {line}\n" for line in init)
    if call_body:
        text += "\n    def call(self, x):\n" + "".join(f"        {line}\n" for line in call_body)
    return text
