"""keras.ops.* / keras.activations.* / tf.* / tf.nn.* / tf.math.* calls where tensors flow -> torch / F calls.

Defaults that differ are written out (``keras.ops.gelu`` approximates by default, torch does not; ``leaky_relu``
slope 0.2); axis arguments are remapped to NCHW dims in conv models (-1 -> 1), and marked where the rank is needed.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import code, literal, expr
from rules.keras_to_torch._base import KerasCallRule, keras_src

_PREFIXES = ("keras.ops.", "keras.activations.", "tensorflow.nn.", "tensorflow.math.", "tensorflow.")
#: elementwise: keras/tf name -> torch callable (first argument is the tensor)
_ELEMENTWISE = {
    "relu": "torch.relu", "sigmoid": "torch.sigmoid", "tanh": "torch.tanh", "silu": "F.silu", "swish": "F.silu",
    "elu": "F.elu", "selu": "F.selu", "softplus": "F.softplus", "relu6": "F.relu6", "exp": "torch.exp",
    "log": "torch.log", "sqrt": "torch.sqrt", "rsqrt": "torch.rsqrt", "abs": "torch.abs", "square": "torch.square",
    "negative": "torch.neg", "erf": "torch.erf", "sin": "torch.sin", "cos": "torch.cos",
    "add": "torch.add", "subtract": "torch.sub", "multiply": "torch.mul", "divide": "torch.div",
    "maximum": "torch.maximum", "minimum": "torch.minimum", "matmul": "torch.matmul", "pow": "torch.pow",
    "power": "torch.pow",
}
_REDUCE = {"reduce_mean": "mean", "mean": "mean", "reduce_sum": "sum", "sum": "sum", "reduce_max": "amax",
           "max": "amax", "reduce_min": "amin", "min": "amin"}
_GELU_APPROX_DEFAULT = {"keras.ops.gelu": True, "tensorflow.nn.gelu": False, "keras.activations.gelu": False}
_SLOPE_DEFAULT = {"keras.ops.leaky_relu": 0.2, "tensorflow.nn.leaky_relu": 0.2, "keras.activations.leaky_relu": 0.2}


class FunctionsRule(KerasCallRule):
    id = "functions"
    description = ("keras.ops / keras.activations / tf / tf.nn / tf.math calls in call() -> torch and "
                   "torch.nn.functional (gelu approximation and leaky_relu slope explicit; axis -> NCHW dim)")
    SCOPE = "tensor"
    NEEDS = ("torch",)
    TARGETS = {f"{p}{n}": "dispatch" for p in _PREFIXES for n in (
        *_ELEMENTWISE, *_REDUCE, "gelu", "leaky_relu", "softmax", "log_softmax", "concat", "concatenate",
        "expand_dims", "squeeze", "reshape", "transpose", "flatten", "max_pool", "average_pool", "max_pool2d",
        "avg_pool2d", "shape")}
    EXAMPLES = (
        Example(keras_src((), ("x = tf.nn.relu(x)", "return keras.ops.gelu(x)"),
                          imports="import keras\nimport tensorflow as tf\n"),
                keras_src((), ("x = torch.relu(x)", 'return F.gelu(x, approximate="tanh")'),
                          imports="import keras\nimport tensorflow as tf\n",
                          head="import torch\nimport torch.nn.functional as F\n", torch=True)),
        Example(keras_src(("self.conv = layers.Conv2D(4, 3)",),
                          ("y = tf.reduce_mean(x, axis=[1, 2])", "return tf.concat([y, y], axis=-1)"),
                          imports="import tensorflow as tf\nfrom tensorflow import keras\nfrom tensorflow.keras import layers\n"),
                keras_src(("self.conv = layers.Conv2D(4, 3)",),
                          ("y = torch.mean(x, dim=(2, 3))", "return torch.cat([y, y], dim=1)"),
                          imports="import tensorflow as tf\nfrom tensorflow import keras\nfrom tensorflow.keras import layers\n",
                          head="import torch\n", torch=True)),
        Example(keras_src((), ("return tf.nn.softmax(x)",), imports="import keras\nimport tensorflow as tf\n"),
                keras_src((), ("return torch.softmax(x, dim=-1)",), imports="import keras\nimport tensorflow as tf\n",
                          head="import torch\n", torch=True)),
    )

    def _axis(self, node: cst.BaseExpression | None, default: object) -> str | None:
        value = literal(node, "?") if node is not None else default
        rank = 4 if self.spatial() else None
        if isinstance(value, (list, tuple)):
            dims = [self.torch_dim(v, rank) for v in value]
            if any(d is None for d in dims):
                return None
            return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
        if value is None:
            return "None"
        dim = self.torch_dim(value, rank)
        return None if dim is None else str(dim)

    def dispatch(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        short = name.rsplit(".", 1)[-1]
        args = [code(a.value) for a in node.args if a.keyword is None]
        kw = {a.keyword.value: a.value for a in node.args if a.keyword is not None}
        if any(a.star for a in node.args) or not args:
            self.todo(f"{short}(...) with star or no positional arguments")
            return None
        x = args[0]
        if short == "shape" and len(args) == 1 and not kw:
            if self.spatial():
                # NHWC vs NCHW: left to the enclosing (batch, -1) reshape, or marked by leftover-keras.
                return None
            return expr(f"{x}.shape" if isinstance(node.args[0].value, (cst.Name, cst.Attribute)) else f"({x}).shape")
        if short in _ELEMENTWISE:
            if kw or (short == "matmul" and len(args) != 2):
                self.todo(f"{short}(...) keyword arguments ({', '.join(kw)}) have no torch equivalent here")
                return None
            if _ELEMENTWISE[short].startswith("F."):
                self.ctx.add_import("torch.nn.functional", "F")
            return expr(f"{_ELEMENTWISE[short]}({', '.join(args)})")
        if short == "gelu":
            approx = literal(kw.get("approximate"), "?") if "approximate" in kw else _GELU_APPROX_DEFAULT.get(name, "?")
            if approx not in (True, False):
                self.todo("gelu approximate= is not a literal")
                return None
            self.ctx.add_import("torch.nn.functional", "F")
            return expr(f'F.gelu({x}, approximate="tanh")' if approx else f"F.gelu({x})")
        if short == "leaky_relu":
            slope = kw.get("negative_slope", kw.get("alpha"))
            value = code(slope) if slope is not None else (args[1] if len(args) > 1 else repr(_SLOPE_DEFAULT.get(name, 0.2)))
            self.ctx.add_import("torch.nn.functional", "F")
            return expr(f"F.leaky_relu({x}, {value})")
        axis_node = kw.get("axis", kw.get("dim"))
        if axis_node is None and len(args) > 1 and short not in ("reshape", "transpose"):
            axis_node = node.args[1].value
        if short in ("softmax", "log_softmax"):
            dim = self._axis(axis_node, -1)
            if dim is None:
                return self._unknown_dim(short)
            return expr(f"torch.{short}({x}, dim={dim})")
        if short in ("concat", "concatenate"):
            dim = self._axis(axis_node, 0 if name.startswith("keras.ops") else "?")
            if dim is None:
                return self._unknown_dim(short)
            return expr(f"torch.cat({x}, dim={dim})")
        if short in _REDUCE:
            dim = self._axis(axis_node, None)
            if dim is None:
                return self._unknown_dim(short)
            keep = kw.get("keepdims")
            tail = f", keepdim={code(keep)}" if keep is not None else ""
            if dim == "None":
                return expr(f"torch.{_REDUCE[short]}({x}{tail})")
            return expr(f"torch.{_REDUCE[short]}({x}, dim={dim}{tail})")
        if short in ("expand_dims", "squeeze"):
            dim = self._axis(axis_node, None)
            if dim is None or (short == "expand_dims" and dim == "None"):
                return self._unknown_dim(short)
            func = "torch.unsqueeze" if short == "expand_dims" else "torch.squeeze"
            return expr(f"{func}({x})" if dim == "None" else f"{func}({x}, {dim})")
        if short in ("max_pool", "average_pool", "max_pool2d", "avg_pool2d"):
            return self._pool(short, node, kw)
        if short == "reshape" and len(args) == 2 and _is_batch_flatten(node.args[1].value):
            return expr(f"torch.flatten({x}, 1)")  # (batch, -1): the next Linear is permuted
        if self.spatial():
            self.todo(f"{short} on channels-last image tensors: NCHW element order differs")
            return None
        if short == "reshape" and len(args) == 2:
            return expr(f"torch.reshape({x}, {args[1]})")
        if short == "transpose" and len(args) == 2 or "perm" in kw or "axes" in kw:
            perm = args[1] if len(args) == 2 else code(kw.get("perm", kw.get("axes")))  # type: ignore[arg-type]
            return expr(f"torch.permute({x}, {perm})")
        self.todo(f"{short}(...) form not translated")
        return None

    def _pool(self, short: str, node: cst.Call, kw: dict[str, cst.BaseExpression]) -> cst.BaseExpression | None:
        names = ["input", "ksize", "strides", "padding"] if short.endswith("2d") else [
            "inputs", "pool_size", "strides", "padding", "data_format"]
        bound = {names[i]: a.value for i, a in enumerate(node.args) if a.keyword is None and i < len(names)}
        bound.update(kw)
        size = bound.get("ksize", bound.get("pool_size"))
        padding = literal(bound.get("padding"), "?") if "padding" in bound else "valid"
        info = self.ctx.current_model()
        ranks = info.ranks if info is not None else set()
        k = literal(size, None)
        dims = len(k) if isinstance(k, tuple) else (next(iter(ranks)) - 2 if len(ranks) == 1 else None)
        if padding not in ("valid", "VALID") or dims is None or size is None:
            self.todo(f"{short}: only 'valid' pooling of known dimensionality is translated")
            return None
        kind = "max" if "max" in short else "avg"
        stride = bound.get("strides")
        tail = f", stride={code(stride)}" if stride is not None and literal(stride, None) is not None else ""
        self.ctx.add_import("torch.nn.functional", "F")
        return expr(f"F.{kind}_pool{dims}d({code(node.args[0].value)}, {code(size)}{tail})")

    def _unknown_dim(self, short: str) -> None:
        self.todo(f"{short}: the axis cannot be mapped to an NCHW dim statically")
        return None


def _is_batch_flatten(shape: cst.BaseExpression) -> bool:
    """``(keras.ops.shape(x)[0], -1)`` / ``(tf.shape(x)[0], -1)`` / ``(x.shape[0], -1)`` / ``(-1, n)``-free check."""
    if not isinstance(shape, (cst.Tuple, cst.List)) or len(shape.elements) != 2:
        return False
    first, last = shape.elements[0].value, shape.elements[1].value
    if literal(last, None) != -1 or not isinstance(first, cst.Subscript):
        return False
    index = first.slice[0].slice if len(first.slice) == 1 else None
    return isinstance(index, cst.Index) and literal(index.value, None) == 0
