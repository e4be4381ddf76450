"""ONNX shape inference without carrying the weights through it.

``onnx.shape_inference.infer_shapes`` takes a ``ModelProto``, serializes it (weights included), infers in C++ and
parses the whole model back: three copies of every weight for an answer that depends only on the initializers'
dims and types, never on the values of a large tensor (the values it may read -- Reshape shapes, Slice starts,
Pad pads -- are a few bytes). onnx2torch runs it on every model it converts (``safe_shape_inference``, 9.5 s of
VGG16's onnx2torch step, 528 MB of weights). ``infer_shapes_lean`` infers on the model with the data of large
initializers cleared and puts the inferred types back on the untouched model; ``lean_onnx2torch_inference`` makes
onnx2torch use it.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

LARGE_ELEMENTS = 8192  # a tensor whose values shape inference could read is a handful of int64s


def infer_shapes_lean(model: Any) -> Any:
    """``infer_shapes(model)``'s result, computed on a copy of the graph whose large initializers are headers only
    (name, dims, type: no data is copied). The inferred ``value_info`` and graph outputs are put on ``model``
    itself, which is returned. Models with subgraphs or local functions (inference fills their inner value_info
    too) take the plain path."""
    from onnx import AttributeProto, GraphProto, ModelProto, TensorProto
    from onnx.shape_inference import infer_shapes

    graph = model.graph
    nested = any(a.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS) for n in graph.node for a in n.attribute)
    if nested or len(model.functions):
        return infer_shapes(model)
    lite = GraphProto(name=graph.name, node=graph.node, input=graph.input, output=graph.output,
                      value_info=graph.value_info, sparse_initializer=graph.sparse_initializer)
    for init in graph.initializer:
        if math.prod(init.dims) > LARGE_ELEMENTS:  # not ByteSize(): upb encodes the message to measure it
            lite.initializer.append(TensorProto(name=init.name, dims=init.dims, data_type=init.data_type))
        else:
            lite.initializer.append(init)
    inferred = infer_shapes(ModelProto(ir_version=model.ir_version, opset_import=model.opset_import, graph=lite))
    del graph.value_info[:]
    graph.value_info.extend(inferred.graph.value_info)
    del graph.output[:]
    graph.output.extend(inferred.graph.output)
    return model


@contextlib.contextmanager
def lean_onnx2torch_inference() -> Iterator[None]:
    """Within the block, ``onnx2torch.convert`` infers shapes with ``infer_shapes_lean`` for a ``ModelProto`` (a
    file path keeps onnx2torch's own path-based inference)."""
    from onnx2torch import converter

    original = converter.safe_shape_inference

    def safe_shape_inference(model_or_path: Any, **kwargs: Any) -> Any:
        from onnx import ModelProto

        if isinstance(model_or_path, ModelProto) and not kwargs:
            return infer_shapes_lean(model_or_path)
        return original(model_or_path, **kwargs)

    converter.safe_shape_inference = safe_shape_inference
    try:
        yield
    finally:
        converter.safe_shape_inference = original
