"""Turn the onnx2torch ``fx.GraphModule`` into a graph a person can read, for ``--emit-source``.

onnx2torch represents most ONNX ops as its own tiny modules (``OnnxMatMul``, ``OnnxTranspose``,
``OnnxBinaryMathOperation``...) named after ONNX node paths (``cnn_1/dense_1/MatMul``). ``model.py`` must not
import onnx2torch, and should read like PyTorch: this pass rewrites the graph in place --

- onnx2torch op modules -> the torch function / tensor method they call (``torch.matmul``, ``x.permute``, ``+``);
- ``MatMul`` by a 2-D weight followed by ``Add`` of a bias -> one ``nn.Linear``; ``Gather`` rows of a float table
  by data indices -> ``nn.Embedding``; ``Sequential(pad, conv)`` -> ``F.pad`` + the ``nn.Conv2d``;
- submodules and weights renamed after the Keras layer they came from (``conv2d``, ``dense_kernel``);
- crossport's own plain-torch helpers (``converter.to_torch.modules``) are written next to ``model.py`` as
  ``onnx_ops.py`` and imported from there.

Anything it cannot translate raises ``NotReadable`` naming the op; the caller then falls back to the ATen listing.
The module classes are recognised by name (onnx2torch 1.5.15), nothing is imported from onnx2torch.
"""
from __future__ import annotations

import operator
import re
from typing import Any, Callable, Iterable, Sequence

from converter.to_torch.readable_layout import cancel_permutes, channels_first

HELPER_MODULE = "onnx_ops"


class NotReadable(Exception):
    """The graph holds something this pass cannot express in plain torch."""


def _torch() -> Any:
    import torch

    return torch


def layer_name(onnx_name: str, keras_layers: Iterable[str] = ()) -> str:
    """``cnn_1/conv2d_1/BiasAdd`` -> ``conv2d`` (the Keras layer), else a sanitised path without the model scope and
    the op suffix."""
    keras = set(keras_layers)
    parts = [p for p in str(onnx_name).split("/") if p]
    if len(parts) >= 3:  # a TF name scope path: scopes carry a call-count suffix (cnn_1/conv2d_1 is layer conv2d)
        for part in reversed(parts[1:-1]):
            base = re.sub(r"_\d+$", "", part)
            for name in (base, part):
                if name in keras:
                    return _ident(name)
        return _ident(re.sub(r"_\d+$", "", parts[-2]))
    name = parts[0] if parts else str(onnx_name)
    base = re.sub(r"_+\d+$", "", name)
    return _ident(base if name not in keras and base in keras else name)


def _ident(text: str) -> str:
    out = re.sub(r"\W+", "_", text).strip("_").lower() or "layer"
    return f"l_{out}" if out[0].isdigit() else out


class _Names:
    def __init__(self, reserved: Iterable[str]) -> None:
        self.taken = set(reserved)

    def new(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            k += 1
            name = f"{base}_{k}"
        self.taken.add(name)
        return name


def _attr_value(gm: Any, node: Any) -> Any:
    if getattr(node, "op", None) != "get_attr":
        return None
    obj = gm
    for part in node.target.split("."):
        obj = getattr(obj, part)
    return obj


def _replace_with(graph: Any, node: Any, make: Callable[[], Any]) -> Any:
    with graph.inserting_before(node):
        new = make()
    if node.meta.get("onnx_name"):
        new.meta["onnx_name"] = node.meta["onnx_name"]  # the weights it reads are named after this layer
    node.replace_all_uses_with(new)
    graph.erase_node(node)
    return new


_FUNCTIONAL = {  # onnx2torch modules that only call one torch function on their inputs
    "OnnxMatMul": lambda m, t: t.matmul, "OnnxErf": lambda m, t: t.erf, "OnnxSqrt": lambda m, t: t.sqrt,
    "OnnxReciprocal": lambda m, t: t.reciprocal, "OnnxNeg": lambda m, t: operator.neg,
    "OnnxNot": lambda m, t: t.logical_not, "OnnxFunction": lambda m, t: m.function,
    "OnnxCompare": lambda m, t: m.compare_function,
}
_OPERATORS = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv}


def _binary_fn(mod: Any) -> Any:
    fn = mod.math_op_function
    if getattr(mod, "broadcast", None) == 1 and getattr(mod, "axis", None) is not None:
        raise NotReadable("legacy broadcast Add/Mul with an axis")
    return _OPERATORS.get(getattr(fn, "__name__", ""), fn)


def _rewrite_module(gm: Any, node: Any) -> bool:
    """Replace one ``call_module`` node of an onnx2torch op; False when the module is kept (torch.nn, ours)."""
    torch = _torch()
    graph = gm.graph
    mod = gm.get_submodule(node.target)
    kind = type(mod).__name__
    args = node.args
    if kind in _FUNCTIONAL:
        fn = _FUNCTIONAL[kind](mod, torch)
        _replace_with(graph, node, lambda: graph.call_function(fn, args))
    elif kind == "OnnxBinaryMathOperation":
        fn = _binary_fn(mod)
        _replace_with(graph, node, lambda: graph.call_function(fn, args))
    elif kind == "OnnxCopyIdentity":
        node.replace_all_uses_with(args[0])
        graph.erase_node(node)
    elif kind == "OnnxTranspose":
        if mod.perm is None:
            raise NotReadable("Transpose without perm")
        _replace_with(graph, node, lambda: graph.call_method("permute", (args[0], *mod.perm)))
    elif kind == "OnnxCast":
        _replace_with(graph, node, lambda: graph.call_method("to", (args[0], mod.torch_dtype)))
    elif kind == "OnnxConcat":
        _replace_with(graph, node, lambda: graph.call_function(torch.cat, (list(args), mod.axis)))
    elif kind in ("OnnxGlobalAveragePoolWithKnownInputShape",):
        dims = list(mod._x_dims)
        _replace_with(graph, node, lambda: graph.call_function(torch.mean, (args[0],), {"dim": dims, "keepdim": True}))
    elif kind == "OnnxUnsqueezeStaticAxes":
        def make() -> Any:
            out = args[0]
            for axis in mod._axes:
                out = graph.call_function(torch.unsqueeze, (out, axis))
            return out
        _replace_with(graph, node, make)
    elif kind == "OnnxSplit13":
        if len(args) > 1:
            sizes = _attr_value(gm, args[1])
            if sizes is None:
                raise NotReadable("Split with computed sizes")
            sections: Any = [int(v) for v in sizes.tolist()]
            _replace_with(graph, node, lambda: graph.call_function(torch.split, (args[0], sections),
                                                                   {"dim": mod.axis}))
        else:  # equal parts (onnx2torch: length // num_splits)
            _replace_with(graph, node, lambda: graph.call_function(torch.chunk, (args[0], mod.num_splits),
                                                                   {"dim": mod.axis}))
    elif kind == "OnnxPadStatic":
        pads, mode, value = list(mod.pads), mod.mode, mod.constant_value
        kwargs = {"mode": mode} if mode != "constant" else ({"value": value} if value else {})
        _replace_with(graph, node, lambda: graph.call_function(torch.nn.functional.pad, (args[0], pads), kwargs))
    elif kind == "OnnxGather":
        _rewrite_gather(gm, node, mod)
    elif isinstance(mod, (torch.nn.Sigmoid, torch.nn.Tanh)):  # gates: idiomatic as functions
        fn = torch.sigmoid if isinstance(mod, torch.nn.Sigmoid) else torch.tanh
        _replace_with(graph, node, lambda: graph.call_function(fn, args))
    elif type(mod).__module__.startswith("onnx2torch"):
        raise NotReadable(f"onnx2torch module {kind}")
    else:
        return False
    return True


def _rewrite_gather(gm: Any, node: Any, mod: Any) -> None:
    """Rows of a float parameter table by data indices -> ``nn.Embedding``; a constant index -> indexing."""
    torch = _torch()
    graph = gm.graph
    data, indices = node.args
    table, const, axis = _attr_value(gm, data), _attr_value(gm, indices), mod._axis
    if isinstance(table, torch.nn.Parameter) and table.dim() == 2 and axis == 0 and const is None:
        emb = torch.nn.Embedding(table.shape[0], table.shape[1])
        emb.weight = table
        name = f"crossport_embedding_{node.name}"
        gm.add_module(name, emb)
        _replace_with(graph, node, lambda: graph.call_module(name, (graph.call_method("long", (indices,)),)))
    elif const is not None and const.dim() == 0 and axis >= 0:
        index = (slice(None),) * axis + (int(const),)
        _replace_with(graph, node, lambda: graph.call_function(operator.getitem, (data, index)))
    elif const is not None and const.dim() == 1:
        _replace_with(graph, node, lambda: graph.call_function(torch.index_select, (data, axis, indices)))
    else:
        raise NotReadable("Gather with computed or multi-dimensional indices")


def _inline_sequentials(gm: Any) -> None:
    torch = _torch()
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_module":
            continue
        mod = gm.get_submodule(node.target)
        if not isinstance(mod, torch.nn.Sequential):
            continue
        with graph.inserting_before(node):
            out = node.args[0]
            for k, child in enumerate(mod):
                name = f"{node.target}__{k}".replace(".", "_")
                gm.add_module(name, child)
                out = graph.call_module(name, (out,))
        node.replace_all_uses_with(out)
        graph.erase_node(node)


def _fuse_linear(gm: Any) -> None:
    """``matmul(x, W) + b`` with parameters W (in, out) and b (out,) -> ``nn.Linear`` (weight W.T, bias b); also
    ``F.linear(x, W.t(), b)``, the same Dense as ``converter.to_torch.fuse`` leaves it in the runtime module."""
    torch = _torch()
    graph = gm.graph
    uses: dict[int, int] = {}  # a weight read in several places (an unrolled RNN) must stay one parameter
    for node in graph.nodes:
        value = _attr_value(gm, node)
        if value is not None:
            uses[id(value)] = uses.get(id(value), 0) + len(node.users)
    for node in list(graph.nodes):
        fused = node.op == "call_function" and node.target is torch.nn.functional.linear \
            and getattr(node.args[1], "target", None) is torch.t and len(node.args[1].users) == 1
        if not fused and (node.op != "call_function" or node.target is not torch.matmul):
            continue
        x, t_node = node.args[0], node.args[1]
        w = _attr_value(gm, t_node.args[0] if fused else t_node)
        if not isinstance(w, torch.nn.Parameter) or w.dim() != 2 or uses.get(id(w)) != 1 or fused and not \
                isinstance(_attr_value(gm, node.args[2]), torch.nn.Parameter):
            continue
        users = list(node.users)
        bias_node, add = (node.args[2], node) if fused else (None, None)
        if not fused and len(users) == 1 and users[0].op == "call_function" and users[0].target is operator.add:
            other = [a for a in users[0].args if a is not node]
            b = _attr_value(gm, other[0]) if len(other) == 1 else None
            if isinstance(b, torch.nn.Parameter) and b.dim() == 1 and b.shape[0] == w.shape[1] \
                    and uses.get(id(b)) == 1:
                bias_node, add = other[0], users[0]
        linear = torch.nn.Linear(w.shape[0], w.shape[1], bias=bias_node is not None)
        linear.weight = torch.nn.Parameter(w.detach().t().contiguous())
        if bias_node is not None:
            linear.bias = _attr_value(gm, bias_node)
        name = f"crossport_linear_{node.name}"
        gm.add_module(name, linear)
        end = add if add is not None else node
        with graph.inserting_before(end):
            new = graph.call_module(name, (x,))
        new.meta["onnx_name"] = node.meta.get("onnx_name", "")
        end.replace_all_uses_with(new)
        graph.erase_node(end)
        for done in (t_node,) if fused else (node,) if end is not node else ():  # end is the fused node itself
            graph.erase_node(done)


def _helpers(gm: Any) -> set[str]:
    """Calls of crossport's plain-torch helpers: cleaner torch calls where that is exact, else import names."""
    torch = _torch()
    from converter.to_torch import modules as M

    used: set[str] = set()
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op == "call_function" and node.target is M.reshape_static:
            x, shape = node.args
            if not any(isinstance(s, int) and s == 0 for s in shape):
                node.target = torch.reshape
                continue
        if node.op == "call_function" and node.target is M.pad_static:  # as a person writes it: F.pad
            x, pads, mode, value = node.args
            node.target, node.args = torch.nn.functional.pad, (x, list(pads))
            node.kwargs = {"mode": mode} if mode != "constant" else ({"value": value} if value else {})
            continue
        if node.op == "call_function" and getattr(node.target, "__module__", "") == M.__name__:
            used.add(node.target.__name__)
    for name, mod in gm.named_modules():
        if type(mod).__module__ == M.__name__:
            used.add(type(mod).__name__)
    return used


def _origin_names(gm: Any) -> None:
    """Remember the ONNX node path of each call_module (onnx2torch uses it as the target) before renaming."""
    for node in gm.graph.nodes:
        if node.op == "call_module":
            node.meta["onnx_name"] = str(node.target)


def _rename(gm: Any, keras_layers: Iterable[str], reserved: Iterable[str]) -> None:
    """Submodules after their layer, weights after their layer and role; every name a plain identifier."""
    torch = _torch()
    names = _Names(reserved)
    graph = gm.graph
    renamed: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        if node.target not in renamed:
            mod = gm.get_submodule(node.target)
            base = layer_name(node.meta.get("onnx_name", node.target), keras_layers)
            kind = type(mod).__name__.lower()
            if base in names.taken and not list(mod.parameters()):  # Dense(activation=...) -> dense, dense_relu
                base = f"{base}_{kind}"
            renamed[node.target] = names.new(base)
        node.target = renamed[node.target]
    modules = {old: gm.get_submodule(old) for old in renamed}
    for old in renamed:
        if "." in old:
            raise NotReadable(f"nested submodule {old}")
        delattr(gm, old)
    for new_name in renamed.values():
        if hasattr(gm, new_name) and new_name not in gm._modules:
            raise NotReadable(f"name clash on {new_name}")
    for old, new in renamed.items():
        gm.add_module(new, modules[old])
    attrs: dict[str, str] = {}
    for node in graph.nodes:
        if node.op != "get_attr":
            continue
        if node.target not in attrs:
            user = next(iter(node.users), None)
            owner = layer_name(user.meta.get("onnx_name", user.name), keras_layers) if user is not None else "const"
            value = _attr_value(gm, node)
            role = "const"
            if isinstance(value, torch.nn.Parameter):
                ops = {getattr(u.target, "__name__", str(u.target)) for u in node.users}
                role = "bias" if ops <= {"add", "sub"} else "scale" if ops <= {"mul"} else "weight"
            new = names.new(f"{owner}_{role}")
            if isinstance(value, torch.nn.Parameter):
                gm.register_parameter(new, value)
            else:
                gm.register_buffer(new, value)
            attrs[node.target] = new
        node.target = attrs[node.target]
    _drop_unused(gm)


def _name_values(gm: Any, input_names: Sequence[str]) -> None:
    """Locals named after what computed them: ``conv2d = self.conv2d(image)``, ``permute = x.permute(...)``."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for node, name in zip(placeholders, input_names):
        node._rename(_ident(name.split(":")[0]))
        node.target = node.name  # the forward() argument itself
    for node in gm.graph.nodes:
        if node.op == "call_module":
            node._rename(str(node.target))
        elif node.op == "get_attr":
            node._rename(str(node.target))
        elif node.op == "call_method":
            node._rename(str(node.target))
        elif node.op == "call_function":
            node._rename(getattr(node.target, "__name__", "value").strip("_"))


def _drop_unused(gm: Any) -> None:
    used = {n.target for n in gm.graph.nodes if n.op in ("call_module", "get_attr")}
    for name in [n for n, _ in gm.named_children() if n not in used]:
        delattr(gm, name)
    for name in [n for n, _ in gm.named_parameters(recurse=False) if n not in used]:
        delattr(gm, name)
    for name in [n for n, _ in gm.named_buffers(recurse=False) if n not in used]:
        delattr(gm, name)


def make_readable(module: Any, keras_layers: Iterable[str] = (), nhwc_inputs: tuple[bool, ...] = (),
                  nhwc_outputs: tuple[bool, ...] = (), input_names: Sequence[str] = ()) -> tuple[Any, set[str]]:
    """A rewritten deep copy of the converted ``GraphModule``; returns it and the ``onnx_ops`` names it uses.
    ``nhwc_*`` (``--nchw``) put the channels-first permutes at the graph's inputs/outputs."""
    import copy

    torch = _torch()
    gm = copy.deepcopy(module)
    if not isinstance(gm, torch.fx.GraphModule):
        raise NotReadable(f"not an fx graph ({type(gm).__name__})")
    _origin_names(gm)
    _inline_sequentials(gm)
    _origin_names_children(gm)
    for node in list(gm.graph.nodes):
        if node.op == "call_module":
            name = node.meta.get("onnx_name", "")
            if _rewrite_module(gm, node):
                continue
            node.meta["onnx_name"] = name
    _fuse_linear(gm)
    channels_first(gm, nhwc_inputs, nhwc_outputs)
    cancel_permutes(gm)
    gm.graph.eliminate_dead_code()
    used = _helpers(gm)
    _rename(gm, keras_layers, reserved=("self", "torch", "nn", "F", "forward", "training", HELPER_MODULE))
    _name_values(gm, input_names)
    gm.graph.lint()
    gm.recompile()
    for _, mod in gm.named_modules():
        origin = type(mod).__module__
        if mod is not gm and not (origin.startswith("torch.nn") or origin == "converter.to_torch.modules"):
            raise NotReadable(f"module {type(mod).__name__} from {origin}")
    return gm, used


def _origin_names_children(gm: Any) -> None:
    for node in gm.graph.nodes:
        if node.op == "call_module" and "__" in str(node.target) and not node.meta.get("onnx_name"):
            node.meta["onnx_name"] = str(node.target).rsplit("__", 1)[0]
