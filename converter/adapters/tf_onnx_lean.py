"""tf2onnx without its redundant copies of the weights: every one of them is a full copy of every weight, and
together they made a Keras export cost minutes per 500 MB (VGG16: 211 s of export for 528 MB of weights, cProfile
at load ~6). Each context manager below patches one tf2onnx function for the duration of one export and gives
tf2onnx the same input it would have had, so the ONNX graph is tf2onnx's own (tests/to_torch/
test_conversion_speed.py compares them node by node).

- ``fresh_node_protos``: the optimizers' per-pass NodeProto rewrite (memory under upb; Const values copied 24x).
- ``lean_freeze``: freezing without re-importing the frozen graph as a ConcreteFunction or into a session.
- ``functions_listed_once``: ``resolve_functions`` converts the whole graph to ONNX nodes only to list the TF
  functions it calls, then ``graphs_from_tf`` converts it again for real.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

from converter.memory import release_memory


@contextlib.contextmanager
def lean_tf2onnx() -> Iterator[None]:
    """All of this module's patches, for one export."""
    library: dict[str, bool] = {}  # lean_freeze records whether the optimized GraphDef calls any TF function
    with fresh_node_protos(), lean_freeze(library), functions_listed_once(library):
        yield


@contextlib.contextmanager
def fresh_node_protos() -> Iterator[None]:
    """tf2onnx's ``Node.update_proto`` (run on every node after each optimizer pass, ~24 times per export) clears
    the NodeProto's attributes with ``del op.attribute[:]`` and extends them again. Under protobuf's default upb
    backend a cleared sub-message stays in the parent message's arena until the parent is freed, so every pass
    leaves one more copy of every Const value behind: ResNet50's optimizers grew 1.9 GB -> 4.3 GB (~90 MB, one
    copy of the weights, per pass). Moving the node onto a fresh NodeProto before the update drops the old arena.

    A Const node's proto is not updated at all: ``Graph.make_graph`` writes every Const as an initializer taken
    from ``node.attr["value"]``, never from the NodeProto, so copying each weight into the proto on every pass
    (``attribute.extend``) was pure cost -- 55 of VGG16's 211 s export (528 MB of weights)."""
    from onnx import NodeProto
    from tf2onnx import graph as tf2onnx_graph

    original = tf2onnx_graph.Node.update_proto

    def update_proto(self: Any, external_tensor_storage: Any = None) -> Any:
        del self._op.attribute[:]
        fresh = NodeProto()
        fresh.CopyFrom(self._op)  # name, op_type, domain, inputs, outputs; the old arena goes with the old proto
        self._op = fresh
        if self.type == "Const" and not self.domain:  # see _const_protos_skipped
            del fresh.output[:]
            fresh.output.extend(self.output)
            return None
        return original(self, external_tensor_storage)

    tf2onnx_graph.Node.update_proto = update_proto
    try:
        yield
    finally:
        tf2onnx_graph.Node.update_proto = original



@contextlib.contextmanager
def lean_freeze(library: dict[str, bool] | None = None) -> Iterator[None]:
    """tf2onnx's ``tf_loader.from_function`` keeps the frozen ``ConcreteFunction`` (its graph holds every weight as
    a constant) and a ``tf.Graph`` with the whole ``graph_def`` imported into a session alive while grappler runs
    (``tf_optimize``), which makes its own copies: ResNet50 sat at 1.8 GB entering grappler and peaked at 2.8 GB.
    The same steps, with no frozen function and no import: tf2onnx imports the whole frozen graph (every weight)
    into a session only to find the non-resource inputs, which the ``GraphDef``'s Placeholders say directly
    (``_inputs_without_resource``). Large-model exports keep tf2onnx's own path.

    ``convert_variables_to_constants_v2`` ends by importing the frozen ``GraphDef`` back into a new
    ``ConcreteFunction`` (``_construct_concrete_function``) only for tf2onnx to export it again as a ``GraphDef``:
    39 of VGG16's 211 s export. The frozen ``GraphDef`` is taken straight from ``_replace_variables_by_constants``
    (what tf2onnx's own large-model path does); grappler then infers the shapes the import would have added."""
    from tf2onnx import tf_loader

    original = tf_loader.from_function

    def from_function(func: Any, input_names: Any, output_names: Any, large_model: bool = False) -> Any:
        import tensorflow as tf

        if large_model:
            return original(func, input_names, output_names, large_model)
        from tensorflow.python.framework import convert_to_constants as freezing

        try:
            data = freezing._FunctionConverterDataInEager(func=func, lower_control_flow=False,
                                                          aggressive_inlining=True)
            graph_def, _ = freezing._replace_variables_by_constants(converter_data=data)
        except ValueError:  # tf2onnx's freezing-error repair path: leave it to tf2onnx
            return original(func, input_names, output_names, large_model)
        del data
        release_memory()
        graph_def = tf_loader.fix_freezing_errors_part2(graph_def)
        input_names = _inputs_without_resource(graph_def, input_names)
        with tf.Graph().as_default():  # export_meta_graph reads the default graph's (empty) collections
            optimized = tf_loader.tf_optimize(input_names, output_names, graph_def)
        if library is not None:
            library["empty"] = not len(optimized.library.function)
        return optimized

    tf_loader.from_function = from_function
    try:
        yield
    finally:
        tf_loader.from_function = original


def _inputs_without_resource(graph_def: Any, input_names: list[str]) -> list[str]:
    """``tf_loader.inputs_without_resource`` read from the ``GraphDef``: the inputs that are not resource
    Placeholders (captured variables). Anything it cannot tell from a Placeholder is answered by tf2onnx's own
    function on an imported graph."""
    from tensorflow.core.framework import types_pb2

    wanted = {name.split(":")[0] for name in input_names}
    placeholders = {n.name: n for n in graph_def.node if n.name in wanted}
    if any(n.op != "Placeholder" for n in placeholders.values()) or len(placeholders) != len(wanted):
        return _imported_inputs_without_resource(graph_def, input_names)
    return [name for name in input_names
            if placeholders[name.split(":")[0]].attr["dtype"].type != types_pb2.DT_RESOURCE]


def _imported_inputs_without_resource(graph_def: Any, input_names: list[str]) -> list[str]:
    import tensorflow as tf
    from tf2onnx import tf_loader

    with tf.Graph().as_default() as tf_graph:
        with tf_loader.tf_session(graph=tf_graph) as sess:
            tf.import_graph_def(graph_def, name="")
            kept = tf_loader.inputs_without_resource(sess, input_names)
    del tf_graph, sess
    release_memory()
    return kept


@contextlib.contextmanager
def functions_listed_once(library: dict[str, bool]) -> Iterator[None]:
    """``tf_loader.resolve_functions`` starts with ``tflist_to_onnx(tf_graph)`` -- every node converted, every
    weight copied ~7 times (NodeDef serializations, ``MakeNdarray``, ``from_array``, ``make_node``) -- and uses the
    result only to look up the graph's TF functions; ``graphs_from_tf`` then converts the whole graph again. A
    graph whose ``GraphDef`` has an empty function library (``lean_freeze`` records it after grappler) resolves
    to ``[]``, which is what tf2onnx's loop over the graph's functions returns for it. A graph that still calls
    functions (a ``_noinline`` function stays a ``StatefulPartitionedCall``) takes tf2onnx's own path:
    ``tf_graph._functions`` is filled only while that first conversion reads the call nodes, so it cannot tell."""
    from tf2onnx import tfonnx

    original = tfonnx.resolve_functions

    def resolve_functions(tf_graph: Any) -> Any:
        if library.pop("empty", False):
            return []
        return original(tf_graph)

    tfonnx.resolve_functions = resolve_functions
    try:
        yield
    finally:
        tfonnx.resolve_functions = original
