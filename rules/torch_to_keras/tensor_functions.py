"""torch.cat/stack/flatten/reshape/permute/transpose/unsqueeze/squeeze/mean/sum/matmul/bmm and elementwise math
-> keras.ops, renaming dim->axis and keepdim->keepdims, remapping channel dims in channels_last mode."""
from __future__ import annotations

from typing import Callable

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules import traced as exact
from rules.cst_tools import arg, bind_args, call, expr, lit, literal, tuple_of

UNARY = {
    n: n for n in ("exp", "log", "sqrt", "rsqrt", "abs", "sin", "cos", "tan", "erf", "floor", "ceil", "round",
                   "sign", "square", "log1p", "expm1", "tanh", "sigmoid", "relu", "zeros_like", "ones_like", "reciprocal")
}
UNARY["neg"] = "negative"
BINARY = {"matmul": "matmul", "bmm": "matmul", "mm": "matmul", "maximum": "maximum", "minimum": "minimum",
          "pow": "power", "add": "add", "sub": "subtract", "mul": "multiply", "div": "divide"}


def flatten_shape(node: cst.BaseExpression) -> cst.BaseExpression:
    return tuple_of([expr(f"keras.ops.shape({_code(node)})[0]"), lit(-1)])


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def is_flatten_form(shape: cst.BaseExpression) -> bool:
    """``(N, -1)`` or ``(-1, K)``: a reshape that flattens all but the batch axis."""
    if not isinstance(shape, (cst.Tuple, cst.List)) or len(shape.elements) != 2:
        return False
    return any(literal(e.value, None) == -1 for e in shape.elements)


class TensorOps:
    """Builds keras.ops calls from torch-style (input-first) arguments; shared by function and method rules."""

    def __init__(self, rule: CallRule) -> None:
        self.rule = rule

    def build(self, op: str, a_args: list[cst.Arg]) -> cst.BaseExpression | None:
        handler: Callable[[cst.Call], cst.BaseExpression | None] | None = getattr(self, f"op_{op}", None)
        node = cst.Call(func=cst.Name(op), args=a_args)
        if handler is not None:
            return handler(node)
        if op in UNARY:
            a = bind_args(node, ["input"])
            return call(f"keras.ops.{UNARY[op]}", arg(a["input"]))
        if op in BINARY:
            a = bind_args(node, ["input", "other"] if op != "pow" else ["input", "exponent"])
            return call(f"keras.ops.{BINARY[op]}", *(arg(v) for v in a.values()))
        return None

    def _axis(self, dim: cst.BaseExpression) -> cst.BaseExpression | None:
        axis = self.rule.remap_dim(dim)
        if axis is None:
            self.rule.todo("cannot tell which axis this dim is after the NCHW->NHWC change")
        return axis

    def _no_remap(self, what: str) -> bool:
        if self.rule.remaps_dims():
            self.rule.todo(f"{what} in a channels_last image model: the axes' meaning changes; rewrite by hand")
            return False
        return True

    def op_cat(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["tensors", "dim"])
        axis = self._axis(a.get("dim", lit(0)))
        return None if axis is None else call("keras.ops.concatenate", arg(a["tensors"]), arg(axis, "axis"))

    op_concat = op_concatenate = op_cat

    def op_stack(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["tensors", "dim"])
        dim = a.get("dim", lit(0))
        if literal(dim, None) != 0 and not self._no_remap("stack"):
            return None
        return call("keras.ops.stack", arg(a["tensors"]), arg(dim, "axis"))

    def op_flatten(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "start_dim", "end_dim"])
        start = literal(a.get("start_dim"), None) if "start_dim" in a else 0
        end = literal(a.get("end_dim"), None) if "end_dim" in a else -1
        if end != -1 or start not in (0, 1):
            self.rule.todo("only flatten(x) and flatten(x, 1) are translated")
            return None
        shape = tuple_of([lit(-1)]) if start == 0 else flatten_shape(a["input"])
        return call("keras.ops.reshape", arg(a["input"]), arg(shape))

    def op_reshape(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "shape"])
        fact = self.rule.traced
        if fact is not None and (fact.before_moved or fact.after_moved):
            found = exact.reshape(a["input"], a["shape"], fact)
            if found is not None:
                return found
        if not is_flatten_form(a["shape"]) and not self._no_remap("reshape/view"):
            return None
        return call("keras.ops.reshape", arg(a["input"]), arg(a["shape"]))

    def _exact_permute(self, x: cst.BaseExpression, perm: tuple[int, ...] | None) -> cst.BaseExpression | None:
        fact = self.rule.traced
        if fact is None or perm is None or not (fact.before_moved or fact.after_moved):
            return None
        return exact.permute(x, perm, fact)

    def op_permute(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dims"])
        fact = self.rule.traced
        found = self._exact_permute(a["input"], exact.permutation(a["dims"], fact.rank) if fact else None)
        if found is not None:
            return found
        if not self._no_remap("permute"):
            return None
        return call("keras.ops.transpose", arg(a["input"]), arg(a["dims"], "axes"))

    def op_transpose(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dim0", "dim1"])
        fact = self.rule.traced
        found = self._exact_permute(a["input"], exact.swap(a["dim0"], a["dim1"], fact.rank) if fact else None)
        if found is not None:
            return found
        if not self._no_remap("transpose"):
            return None
        return call("keras.ops.swapaxes", arg(a["input"]), arg(a["dim0"]), arg(a["dim1"]))

    op_swapaxes = op_transpose

    def op_unsqueeze(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dim"])
        found = self._exact_squeeze(a, expand=True)
        if found is not None:
            return found
        if not self._no_remap("unsqueeze"):
            return None
        return call("keras.ops.expand_dims", arg(a["input"]), arg(a["dim"]))

    def op_squeeze(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dim"])
        if "dim" not in a:
            return call("keras.ops.squeeze", arg(a["input"]))
        found = self._exact_squeeze(a, expand=False)
        if found is not None:
            return found
        if not self._no_remap("squeeze"):
            return None
        return call("keras.ops.squeeze", arg(a["input"]), arg(a["dim"], "axis"))

    def _exact_squeeze(self, a: dict[str, cst.BaseExpression], expand: bool) -> cst.BaseExpression | None:
        fact = self.rule.traced
        if fact is None or "dim" not in a or not (fact.before_moved or fact.after_moved):
            return None
        return exact.squeeze(a["input"], a["dim"], fact, expand)

    def _reduce(self, node: cst.Call, op: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dim", "keepdim", "dtype"])
        if "dtype" in a:
            self.rule.todo(f"{op}(dtype=...) is not translated")
            return None
        fact = self.rule.traced
        if fact is not None and "dim" in a and (fact.before_moved or fact.after_moved):
            found = exact.reduce(op, a["input"], a["dim"], a.get("keepdim"), fact)
            if found is not None:
                return found
        args = [arg(a["input"])]
        if "dim" in a and literal(a["dim"], 0) is not None:
            axis = self._axis(a["dim"])
            if axis is None:
                return None
            args.append(arg(axis, "axis"))
        if "keepdim" in a:
            args.append(arg(a["keepdim"], "keepdims"))
        return call(f"keras.ops.{op}", *args)

    def op_mean(self, node: cst.Call) -> cst.BaseExpression | None:
        return self._reduce(node, "mean")

    def op_sum(self, node: cst.Call) -> cst.BaseExpression | None:
        return self._reduce(node, "sum")

    def op_amax(self, node: cst.Call) -> cst.BaseExpression | None:
        return self._reduce(node, "max")

    def op_amin(self, node: cst.Call) -> cst.BaseExpression | None:
        return self._reduce(node, "min")

    def _max_min(self, node: cst.Call, op: str) -> cst.BaseExpression | None:
        if len(node.args) == 1 and node.args[0].keyword is None:
            return call(f"keras.ops.{op}", arg(node.args[0].value))
        # With dim it returns (values, indices): the rule max-min-dim rewrites `[0]`, `.values`, unpacking, ...;
        # anything else is marked by leftover-torch / max-min-dim.
        return None

    def op_max(self, node: cst.Call) -> cst.BaseExpression | None:
        return self._max_min(node, "max")

    def op_min(self, node: cst.Call) -> cst.BaseExpression | None:
        return self._max_min(node, "min")

    def op_clamp(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "min", "max"])
        if "min" in a and "max" in a:
            return call("keras.ops.clip", arg(a["input"]), arg(a["min"]), arg(a["max"]))
        if "min" in a:
            return call("keras.ops.maximum", arg(a["input"]), arg(a["min"]))
        if "max" in a:
            return call("keras.ops.minimum", arg(a["input"]), arg(a["max"]))
        return a["input"]

    op_clip = op_clamp

    def op_softmax(self, node: cst.Call) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dim"])
        axis = self._axis(a["dim"]) if "dim" in a else None
        return None if axis is None else call("keras.ops.softmax", arg(a["input"]), arg(axis, "axis"))


_FUNCTIONS = ("cat", "concat", "concatenate", "stack", "flatten", "reshape", "permute", "transpose", "swapaxes",
              "unsqueeze", "squeeze", "mean", "sum", "amax", "amin", "max", "min", "clamp", "clip",
              *UNARY, *BINARY)


class TensorFunctionRule(CallRule):
    id = "tensor-functions"
    description = ("torch.cat/stack/flatten/reshape/permute/transpose/unsqueeze/squeeze/mean/sum/matmul/bmm/clamp and "
                   "elementwise math -> keras.ops (dim -> axis, keepdim -> keepdims, transpose -> swapaxes)")
    TARGETS = {f"torch.{n}": "function" for n in _FUNCTIONS}
    SCOPE = "tensor"
    EXAMPLES = (
        Example(model_src(forward=("return torch.cat([x, x], dim=1)",)),
                model_src(forward=("return keras.ops.concatenate([x, x], axis=1)",), keras=True)),
        Example(model_src(forward=("return torch.flatten(x, 1)",)),
                model_src(forward=("return keras.ops.reshape(x, (keras.ops.shape(x)[0], -1))",), keras=True)),
        Example(model_src(forward=("return torch.transpose(x, 1, 2)",)),
                model_src(forward=("return keras.ops.swapaxes(x, 1, 2)",), keras=True)),
        Example(model_src(forward=("return torch.mean(x, dim=(2, 3), keepdim=True)",)),
                model_src(forward=("return keras.ops.mean(x, axis=(2, 3), keepdims=True)",), keras=True)),
        Example(model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("return torch.cat([x, x], dim=1)",)),
                model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("return keras.ops.concatenate([x, x], axis=-1)",),
                          keras=True), layout="channels_last"),
        Example(model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("return torch.permute(x, (0, 2, 3, 1))",)),
                model_src(("self.conv = nn.Conv2d(3, 3, 1)",),
                          ("# crossport: TODO(tensor-functions): permute in a channels_last image model: the axes' "
                           "meaning changes; rewrite by hand", "return torch.permute(x, (0, 2, 3, 1))")),
                layout="channels_last"),
        Example(model_src(forward=("return torch.bmm(x, x) + torch.exp(x)",)),
                model_src(forward=("return keras.ops.matmul(x, x) + keras.ops.exp(x)",), keras=True)),
    )

    def function(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        return TensorOps(self).build(name.split(".", 1)[1], list(node.args))
