"""Keep device literals out of the PyTorch artifacts, so that ``.to("cuda")`` moves the whole model.

``torch.export`` and ``torch.jit.trace`` record the device each tensor was made on: a ``torch.zeros(..., device=
x.device)`` (an LSTM's initial state) becomes ``aten.zeros(..., device=cpu)``, Keras' torch backend adds a
``.to(cpu)`` and a metadata assert per converted tensor, and TorchScript stores ``torch.device("cpu")`` constants.
After ``.to("cuda")`` those still make CPU tensors and the first op mixing them fails. We rewrite them: factory
calls take their device from the first input (``new_zeros``/``new_ones``/``new_full``/``new_empty``), device
arguments of casts and asserts are dropped (a cast then keeps its input's device), and TorchScript device constants
become ``prim::device(input)``. ``device_literals`` lists what is left, for the report and the tests.
"""
from __future__ import annotations

from typing import Any


def _tables() -> tuple[dict[Any, Any], set[Any]]:
    import torch

    aten = torch.ops.aten
    factories = {aten.zeros.default: aten.new_zeros.default, aten.ones.default: aten.new_ones.default,
                 aten.full.default: aten.new_full.default, aten.empty.memory_format: aten.new_empty.default}
    drop = {aten._assert_tensor_metadata.default, aten.to.dtype_layout, aten._to_copy.default,
            aten.zeros_like.default, aten.ones_like.default, aten.full_like.default, aten.empty_like.default}
    return factories, drop


def _has_device(node: Any) -> bool:
    import torch

    return node.op == "call_function" and (node.kwargs.get("device") is not None
                                           or any(isinstance(a, torch.device) for a in node.args))


def device_literals(program: Any) -> list[str]:
    """Each call in an ExportedProgram (or TorchScript module) that names a device, as one line."""
    import torch

    if isinstance(program, torch.jit.ScriptModule):
        return [str(n).strip() for n in program.inlined_graph.nodes()
                if n.kind() == "prim::Constant" and n.output().type().kind() == "DeviceObjType"]
    return [f"{n.target}({', '.join(f'{k}={v}' for k, v in n.kwargs.items())})"
            for n in program.graph_module.graph.nodes if _has_device(n)]


def strip_program(program: Any) -> Any:
    """Rewrite an ExportedProgram in place (see the module docstring); returns it."""
    import torch

    factories, drop = _tables()
    _constants_as_buffers(program)
    graph = program.graph_module.graph
    user = set(program.graph_signature.user_inputs)
    anchor = next((n for n in graph.nodes if n.op == "placeholder" and n.name in user
                   and hasattr(n.meta.get("val"), "device")), None)
    for node in list(graph.nodes):
        if not _has_device(node):
            continue
        kwargs = {k: v for k, v in node.kwargs.items() if k != "device"}
        if node.target in drop:
            node.kwargs = kwargs
        elif node.target == torch.ops.aten.arange.default and anchor is not None:
            _arange_from(graph, node, anchor, kwargs)
        elif node.target in factories and anchor is not None:
            val = node.meta.get("val")
            kwargs["dtype"] = kwargs.get("dtype") or getattr(val, "dtype", None)
            with graph.inserting_before(node):
                new = graph.call_function(factories[node.target], (anchor, *node.args), kwargs)
            new.meta = dict(node.meta)
            node.replace_all_uses_with(new)
            graph.erase_node(node)
    graph.lint()
    program.graph_module.recompile()
    return program


def _arange_from(graph: Any, node: Any, anchor: Any, kwargs: dict[str, Any]) -> None:
    """``arange(n)`` as ``cumsum(new_ones(anchor, [n])) - 1`` in int64 (exact), cast to the requested dtype."""
    import torch

    aten = torch.ops.aten
    dtype = kwargs.get("dtype") or getattr(node.meta.get("val"), "dtype", torch.int64)
    with graph.inserting_before(node):
        ones = _call(graph, anchor, aten.new_ones.default, (anchor, [node.args[0]]), {"dtype": torch.int64})
        count = _call(graph, anchor, aten.cumsum.default, (ones, 0), {})
        index = _call(graph, anchor, aten.sub.Tensor, (count, 1), {})
        new = graph.call_function(aten._to_copy.default, (index,), {"dtype": dtype})
    new.meta = dict(node.meta)
    node.replace_all_uses_with(new)
    graph.erase_node(node)


def _call(graph: Any, anchor: Any, target: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A new graph node with the ``meta["val"]`` the exported program's verifier requires (computed on fake
    tensors in the program's own fake mode)."""
    import torch

    node = graph.call_function(target, args, kwargs)
    vals = torch.fx.node.map_arg(args, lambda n: n.meta["val"])
    with anchor.meta["val"].fake_mode:
        node.meta["val"] = target(*vals, **kwargs)
    return node


def _constants_as_buffers(program: Any) -> None:
    """Lifted tensor constants become plain attributes of ``program.module()``, which ``.to()`` does not move;
    as non-persistent buffers (stored the same way) they move with the parameters."""
    from torch.export.graph_signature import InputKind

    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.CONSTANT_TENSOR:
            spec.kind = InputKind.BUFFER
            spec.persistent = False


def strip_torchscript(module: Any) -> Any:
    """Replace ``torch.device`` constants in every traced method graph by the device of the method's first tensor
    input; returns the module."""
    import torch

    for sub in module.modules():
        if not sub._c._has_method("forward"):  # noqa: SLF001 - containers (ModuleList) have no forward graph
            continue
        graph = sub.graph
        inputs = [v for v in list(graph.inputs())[1:] if v.type().kind() == "TensorType"]
        consts = [n for n in graph.nodes()
                  if n.kind() == "prim::Constant" and n.output().type().kind() == "DeviceObjType"]
        if not inputs or not consts:
            continue
        device = graph.create("prim::device", [inputs[0]])
        device.output().setType(torch._C.DeviceObjType.get())  # noqa: SLF001 - TorchScript's IR API
        device.insertBefore(next(iter(graph.nodes())))  # the inputs exist from the start
        for const in consts:
            const.output().replaceAllUsesWith(device.output())
            const.destroy()
    return module


def make_device_free(program: Any) -> tuple[str, ...]:
    """Strip an ExportedProgram or traced TorchScript module in place; notes for the report if anything is left."""
    import torch

    if isinstance(program, torch.jit.ScriptModule):
        strip_torchscript(program)
    else:
        strip_program(program)
    left = device_literals(program)
    if not left:
        return ()
    return (f"the PyTorch file still names a device in {len(left)} op(s) (first: {left[0][:120]}); "
            "it may not run after .to('cuda')",)
