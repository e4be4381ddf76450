"""Converters onnx2torch (1.5.15) lacks, registered through its public ``add_converter`` registry: LSTM/GRU, the
opset-18 Reduce* (axes as an input), and aliases for newer op versions that only widen dtypes (see
``converter.adapters.onnx2torch_adapter`` for why each exists)."""
from __future__ import annotations

from typing import Any

_REGISTERED = False


def register_converters() -> None:
    """Register LSTM, GRU and opset-18 Reduce* once per process through onnx2torch's public registry."""
    global _REGISTERED
    if _REGISTERED:
        return
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, OperationDescription, add_converter

    def register(op: str, version: int, fn: Any) -> None:
        # Skip ops a future onnx2torch release registers itself (add_converter raises on duplicates).
        if OperationDescription("", op, version) not in _CONVERTER_REGISTRY:
            add_converter(operation_type=op, version=version)(fn)

    for version in (7, 14, 22):
        register("LSTM", version, _convert_lstm)
        register("GRU", version, _convert_gru)
    from converter.to_torch.modules import REDUCE_OPS

    for op in REDUCE_OPS:
        register(op, 18, _convert_reduce_18)
    for op in ("ReduceMax", "ReduceMin"):
        register(op, 20, _convert_reduce_18)  # 20 only adds bool inputs, which torch.amax/amin accept
    _alias_newer_versions(register)
    _REGISTERED = True


# ops whose versions after onnx2torch's newest only add dtypes (bfloat16, float8, int4, ...), or add features we
# check for in ``_GUARDS`` before reusing onnx2torch's converter
_DTYPE_ONLY = (
    "Identity", "Reshape", "Shape", "Size", "Cast", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Constant",
    "ConstantOfShape", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Where", "Cos", "Sin", "Tan",
    "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Softsign", "Round", "Dropout", "MaxPool", "Conv",
    "ConvTranspose", "GlobalAveragePool", "GlobalMaxPool", "InstanceNormalization", "IsInf", "IsNaN", "EyeLike",
    "AveragePool", "Pad", "Resize", "Split", "LRN", "Gather", "Expand", "Tile", "Slice", "Concat",
)
_MAX_OPSET = 22


def _pad_guard(node: Any, graph: Any) -> str:
    if len(node.input_values) > 3 and node.input_values[3]:
        return "Pad with an axes input"
    mode = node.attributes.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    return "Pad mode 'wrap'" if mode == "wrap" else ""


def _pool_guard(node: Any, graph: Any) -> str:
    dilations = node.attributes.get("dilations")
    return "AveragePool with dilations" if dilations and any(int(d) != 1 for d in dilations) else ""


def _resize_guard(node: Any, graph: Any) -> str:
    attrs = node.attributes
    if int(attrs.get("antialias", 0)) or attrs.get("axes") is not None:
        return "Resize with antialias or axes"
    policy = attrs.get("keep_aspect_ratio_policy", "stretch")
    return "Resize keep_aspect_ratio_policy" if (policy.decode() if isinstance(policy, bytes) else policy) != \
        "stretch" else ""


_GUARDS = {"Pad": _pad_guard, "AveragePool": _pool_guard, "Resize": _resize_guard}


def _guarded(converter: Any, guard: Any) -> Any:
    def convert(node: Any, graph: Any) -> Any:
        problem = guard(node, graph)
        if problem:
            raise NotImplementedError(f"{problem} is not supported (operation_type='{node.operation_type}', "
                                      f"version=0)")
        return converter(node, graph)

    return convert


def _alias_newer_versions(register: Any) -> None:
    """Register onnx2torch's newest converter of each ``_DTYPE_ONLY`` op for the op's later ONNX versions."""
    from onnx import defs
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY

    newest: dict[str, int] = {}
    for d in _CONVERTER_REGISTRY:
        if d.domain == "" and d.operation_type in _DTYPE_ONLY:
            newest[d.operation_type] = max(newest.get(d.operation_type, 0), d.version)
    for op, have in newest.items():
        base = _CONVERTER_REGISTRY[next(d for d in _CONVERTER_REGISTRY if d.domain == ""
                                        and d.operation_type == op and d.version == have)]
        guard = _GUARDS.get(op)
        versions = set()
        for opset in range(have + 1, _MAX_OPSET + 1):
            try:
                versions.add(defs.get_schema(op, max_inclusive_version=opset, domain="").since_version)
            except Exception:  # noqa: BLE001 - op unknown at that opset
                continue
        for version in sorted(v for v in versions if v > have):
            register(op, version, _guarded(base, guard) if guard else base)


def _initializer(graph: Any, node: Any, index: int, required: bool = True) -> Any:
    names = node.input_values
    name = names[index] if index < len(names) else ""
    if not name:
        if required:
            raise NotImplementedError(f"{node.operation_type} input {index} is missing")
        return None
    if name not in graph.initializers:
        raise NotImplementedError(f"{node.operation_type} input {index} ({name}) must be a constant initializer")
    return graph.initializers[name].to_torch()


def _check_rnn_attrs(node: Any, default_acts: tuple[str, ...]) -> tuple[str, int]:
    attrs = node.attributes
    acts = tuple(a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", ()))
    direction = attrs.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if acts and tuple(a.lower() for a in acts) != tuple(a.lower() for a in default_acts * (2 if direction ==
                                                                                               "bidirectional" else 1)):
        raise NotImplementedError(f"{node.operation_type} with activations {acts} is not supported "
                                  f"(operation_type='{node.operation_type}', version=0)")
    if attrs.get("clip") is not None:
        raise NotImplementedError(f"{node.operation_type} with clip is not supported")
    return direction, int(attrs.get("layout", 0))


def _mapping(node: Any, inputs: tuple[int, ...]) -> Any:
    from onnx2torch.utils.common import OnnxMapping

    names = node.input_values
    return OnnxMapping(inputs=tuple(names[i] if i < len(names) else "" for i in inputs), outputs=node.output_values)


def _convert_lstm(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OperationConverterResult

    from converter.to_torch.modules import OnnxLSTM

    direction, layout = _check_rnn_attrs(node, ("Sigmoid", "Tanh", "Tanh"))
    if int(node.attributes.get("input_forget", 0)):
        raise NotImplementedError("LSTM input_forget=1 is not supported")
    peep = _initializer(graph, node, 7, required=False)
    if peep is not None and bool((peep != 0).any()):
        raise NotImplementedError("LSTM peepholes are not supported")
    module = OnnxLSTM(_initializer(graph, node, 1), _initializer(graph, node, 2),
                      _initializer(graph, node, 3, required=False), direction, layout, len(node.output_values))
    # sequence_lens (input 4) is not used: verification shows whether every sequence was full length.
    return OperationConverterResult(torch_module=module, onnx_mapping=_mapping(node, (0, 5, 6)))


def _convert_gru(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OperationConverterResult

    from converter.to_torch.modules import OnnxGRU

    direction, layout = _check_rnn_attrs(node, ("Sigmoid", "Tanh"))
    module = OnnxGRU(_initializer(graph, node, 1), _initializer(graph, node, 2),
                     _initializer(graph, node, 3, required=False), direction, layout,
                     int(node.attributes.get("linear_before_reset", 0)), len(node.output_values))
    return OperationConverterResult(torch_module=module, onnx_mapping=_mapping(node, (0, 5)))


def _convert_reduce_18(node: Any, graph: Any) -> Any:
    from onnx2torch.utils.common import OperationConverterResult

    from converter.to_torch.modules import OnnxReduce

    axes_t = _initializer(graph, node, 1, required=False)
    axes = tuple(int(a) for a in axes_t.reshape(-1).tolist()) if axes_t is not None else None
    module = OnnxReduce(node.operation_type, axes, bool(node.attributes.get("keepdims", 1)),
                        bool(node.attributes.get("noop_with_empty_axes", 0)))
    return OperationConverterResult(torch_module=module, onnx_mapping=_mapping(node, (0,)))
