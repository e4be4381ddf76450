"""Tensor methods in forward code: x.view/reshape/flatten/size/permute/transpose/mean/... -> keras.ops.

Only calls on values that are not imported names are treated as tensor methods, and only inside methods of
torch model classes (other than __init__) — that is where tensors flow.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, call, expr, literal, tuple_of, Unbindable
from rules.traced import shape_of
from rules.torch_to_keras.tensor_functions import BINARY, UNARY, TensorOps
from rules.cst_walk import walk

_VARARG_SHAPE = {"view": "reshape", "reshape": "reshape", "permute": "permute"}
_SAME = ("flatten", "transpose", "unsqueeze", "squeeze", "mean", "sum", "amax", "amin", "max", "min", "clamp",
         "softmax", *UNARY, *BINARY)
#: Methods with no keras.ops spelling here: marked rather than left to fail at run time.
_TORCH_ONLY = ("chunk", "split", "expand", "repeat", "masked_fill", "type_as", "new_zeros", "new_ones",
               "scatter", "gather", "index_select", "narrow", "float", "long", "half", "to", "cuda", "cpu", "numpy",
               "item", "clone", "t", "add_", "mul_", "sub_", "div_", "zero_", "fill_", "copy_", "masked_fill_",
               "numel", "data_ptr", "register_hook")


class TensorMethodRule(CallRule):
    id = "tensor-methods"
    description = ("x.view/reshape/flatten/size/contiguous/detach/permute/transpose/unsqueeze/squeeze/mean/sum/... "
                   "-> keras.ops; x.size(d) -> keras.ops.shape(x)[d]; torch-only methods (chunk, masked_fill, .to) are marked")
    SCOPE = "tensor"
    order = 60
    EXAMPLES = (
        Example(model_src(forward=("x = x.view(x.size(0), -1)", "return x.contiguous()")),
                model_src(forward=("x = keras.ops.reshape(x, (keras.ops.shape(x)[0], -1))", "return x"), keras=True)),
        Example(model_src(forward=("return x.mean(dim=1, keepdim=True).unsqueeze(-1)",)),
                model_src(forward=("return keras.ops.expand_dims(keras.ops.mean(x, axis=1, keepdims=True), -1)",),
                          keras=True)),
        Example(model_src(forward=("return x.transpose(1, 2)",)),
                model_src(forward=("return keras.ops.swapaxes(x, 1, 2)",), keras=True)),
        Example(model_src(forward=("a, b = x.chunk(2, dim=-1)", "return a * b")),
                model_src(forward=("# crossport: TODO(tensor-methods): tensor method .chunk() has no keras.ops "
                                   "translation here", "a, b = x.chunk(2, dim=-1)", "return a * b"))),
        Example(model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("b, c, h, w = x.shape", "return x")),
                model_src(("self.conv = nn.Conv2d(3, 3, 1)",),
                          ("# crossport: TODO(tensor-methods): x.shape in a channels_last image model is the NHWC "
                           "shape; index it by axis instead", "b, c, h, w = x.shape", "return x")),
                layout="channels_last"),
        Example(model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("return x.shape[1]",)),
                model_src(("self.conv = nn.Conv2d(3, 3, 1)",), ("return keras.ops.shape(x)[-1]",), keras=True),
                layout="channels_last"),
    )

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        func = updated_node.func
        if not self.ctx.in_tensor_code() or not isinstance(func, cst.Attribute) or not isinstance(
            original_node.func, cst.Attribute
        ):
            return updated_node
        receiver = original_node.func.value if isinstance(original_node.func, cst.Attribute) else None
        named = isinstance(receiver, (cst.Name, cst.Attribute))  # a call/subscript result is a tensor, not a module
        qname = (self.ctx.qualified_name(receiver) or "") if named else ""
        if qname.split(".")[0] in ("torch", "keras", "numpy", "np", "math", "tf", "tensorflow"):
            return updated_node
        target = func.value
        if isinstance(target, cst.Name) and target.value == "self":
            return updated_node  # self.method(...) is a method of the model, not a tensor method
        method = func.attr.value
        if method in _TORCH_ONLY:
            self.todo(f"tensor method .{method}() has no keras.ops translation here")
            return updated_node
        self.traced = self.trace_of(original_node)
        try:
            result = self._method(method, target, list(updated_node.args))
        except Unbindable as err:
            self.todo(f"cannot name the arguments of .{method}(...) ({err})")
            return updated_node
        finally:
            self.traced = None
        if result is None:
            return updated_node
        self.ctx.add_import("keras")
        return result

    def _method(self, method: str, target: cst.BaseExpression, args: list[cst.Arg]) -> cst.BaseExpression | None:
        if method == "contiguous" and not args:
            return target
        if method == "detach" and not args:
            return call("keras.ops.stop_gradient", arg(target))
        if method == "expand_as" and len(args) == 1 and args[0].keyword is None:
            return call("keras.ops.broadcast_to", arg(target), arg(call("keras.ops.shape", arg(args[0].value))))
        if method == "dim" and not args:
            return expr(f"len({cst.Module(body=[]).code_for_node(target)}.shape)")
        if method == "size":
            shape = call("keras.ops.shape", arg(target))
            if not args:
                if self.traced is not None:
                    return shape_of(target, self.traced)
                if self.remaps_dims():
                    self.todo("x.size() in a channels_last image model is the NHWC shape; index it by axis instead")
                    return None
                return shape
            if len(args) != 1 or args[0].keyword not in (None,) and args[0].keyword.value != "dim":  # type: ignore[union-attr]
                return None
            index = self.remap_dim(args[0].value)
            if index is None:
                self.todo("cannot tell which axis this dim is after the NCHW->NHWC change")
                return None
            return cst.Subscript(value=shape, slice=[cst.SubscriptElement(cst.Index(index))])
        ops = TensorOps(self)
        if method in _VARARG_SHAPE:
            positional = [a for a in args if a.keyword is None and not a.star]
            if len(positional) != len(args) or not positional:
                return None
            if len(positional) == 1 and not isinstance(positional[0].value, (cst.Integer, cst.UnaryOperation)):
                shape = positional[0].value
            else:
                shape = tuple_of([a.value for a in positional])
            return ops.build(_VARARG_SHAPE[method], [arg(target), arg(shape)])
        if method in _SAME:
            return ops.build(method, [arg(target), *args])
        return None

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        """A bare ``x.shape`` (e.g. ``b, c, h, w = x.shape``) is NHWC in a channels_last image model: mark it."""
        if self.ctx.in_tensor_code() and self.ctx.remaps_dims() and "shape" in self.ctx.statement_words(updated_node):
            finder = _BareShape()
            walk(updated_node, finder)
            if finder.found:
                self.todo("x.shape in a channels_last image model is the NHWC shape; index it by axis instead")
        return updated_node

    def leave_Subscript(self, original_node: cst.Subscript, updated_node: cst.Subscript) -> cst.BaseExpression:
        """``x.shape[1]`` -> ``keras.ops.shape(x)[-1]`` when channel dims move (channels_last image model)."""
        value = updated_node.value
        if not (self.ctx.in_tensor_code() and self.ctx.remaps_dims() and isinstance(value, cst.Attribute)
                and value.attr.value == "shape" and len(updated_node.slice) == 1
                and isinstance(updated_node.slice[0].slice, cst.Index)):
            return updated_node
        index = updated_node.slice[0].slice.value
        if not isinstance(literal(index, None), int):
            return updated_node
        new = self.remap_dim(index)
        if new is None:
            self.todo("cannot tell which axis this index is after the NCHW->NHWC change")
            return updated_node
        self.ctx.add_import("keras")
        return cst.Subscript(value=call("keras.ops.shape", arg(value.value)), slice=[cst.SubscriptElement(cst.Index(new))])


class _BareShape(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found = False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if node.attr.value == "shape" and cst.Module(body=[]).code_for_node(node.value) != "keras.ops":
            self.found = True
