"""tf2onnx's integer ``SelectV2`` put back as ONNX ``Where``; Keras' negative-index wrap before a Gather dropped.

Part of the tf2onnx adapter's repairs (``tf_onnx_repair.repair``). tf2onnx lowers TF's ``SelectV2`` on integer
tensors to ``Cast(c) * a + b * Cast(Not(c))`` (six nodes). Keras 3's ``Embedding`` calls ``ops.take``, whose TF
backend wraps negative ids first (``where(ids < 0, ids + vocabulary, ids)``), so every Keras embedding reached
PyTorch as ten small ops before its lookup (``aten.to`` / ``less`` / ``logical_not`` / ``mul`` / ``add``; a
two-layer Keras LSTM text model spent ~0.1 ms of its 0.9 ms per call in them). ``restore_selects`` writes the
``Where`` back; ``drop_index_wraps`` then removes a wrap whose only consumer is a ``Gather`` on the wrapped axis of
a constant of that length: ONNX ``Gather`` (and PyTorch indexing, which onnx2torch uses) already reads a negative
index from the end, and an index outside [-n, n) is an error either way. Both are exact.
"""
from __future__ import annotations

from typing import Any


def _producers(proto: Any) -> dict[str, Any]:
    return {out: node for node in proto.graph.node for out in node.output}


def _consumers(proto: Any) -> dict[str, list[Any]]:
    users: dict[str, list[Any]] = {}
    for node in proto.graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _made_by(producers: dict[str, Any], name: str, op: str) -> Any:
    node = producers.get(name)
    return node if node is not None and node.op_type == op else None


def _constant(proto: Any, producers: dict[str, Any], name: str) -> Any:
    """The value of an initializer or a Constant node, else None."""
    from onnx import numpy_helper

    for init in proto.graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    node = _made_by(producers, name, "Constant")
    if node is not None:
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
    return None


def _select_parts(producers: dict[str, Any], add: Any) -> tuple[str, str, str] | None:
    """(condition, a, b) when ``add`` is ``Cast(c) * a + b * Cast(Not(c))`` in any operand order, else None."""
    muls = [_made_by(producers, name, "Mul") for name in add.input]
    if add.op_type != "Add" or len(add.input) != 2 or None in muls:
        return None
    picks: list[tuple[str, str, bool]] = []  # (condition, other operand, negated)
    for mul in muls:
        found = None
        for i in (0, 1):
            cast = _made_by(producers, mul.input[i], "Cast")
            if cast is None:
                continue
            neg = _made_by(producers, cast.input[0], "Not")
            found = (neg.input[0], mul.input[1 - i], True) if neg is not None else (cast.input[0], mul.input[1 - i],
                                                                                     False)
            break
        if found is None:
            return None
        picks.append(found)
    (c1, x1, n1), (c2, x2, n2) = picks
    if c1 != c2 or n1 == n2:
        return None
    return (c1, x2, x1) if n1 else (c1, x1, x2)


def restore_selects(proto: Any) -> int:
    """Rewrite each lowered integer select as one ``Where``; returns how many."""
    from onnx import helper

    producers = _producers(proto)
    graph = proto.graph
    count = 0
    for index, node in enumerate(list(graph.node)):
        parts = _select_parts(producers, node)
        if parts is None:
            continue
        where = helper.make_node("Where", list(parts), list(node.output), name=node.name or f"where_{index}")
        position = list(graph.node).index(node)
        graph.node.remove(node)
        graph.node.insert(position, where)
        producers[node.output[0]] = where
        count += 1
    if count:
        _drop_dead(proto)
    return count


def _wrapped_index(proto: Any, producers: dict[str, Any], where: Any, length: int) -> str | None:
    """``x`` when ``where`` is ``Where(x < 0, x + length, x)`` (``x`` possibly cast for the compare), else None."""
    import numpy as np

    if where is None or where.op_type != "Where":
        return None
    cond, wrapped, x = where.input
    less = _made_by(producers, cond, "Less")
    add = _made_by(producers, wrapped, "Add")
    if less is None or add is None or x not in add.input:
        return None
    zero = _constant(proto, producers, less.input[1])
    compared = less.input[0]
    cast = _made_by(producers, compared, "Cast")
    if zero is None or np.any(zero != 0) or (compared != x and (cast is None or cast.input[0] != x)):
        return None
    offset = _constant(proto, producers, add.input[1] if add.input[0] == x else add.input[0])
    return x if offset is not None and offset.size == 1 and int(offset.reshape(())) == length else None


def drop_index_wraps(proto: Any) -> int:
    """Feed each ``Gather`` the index before a negative-index wrap the Gather does itself; returns how many."""
    producers = _producers(proto)
    users = _consumers(proto)
    count = 0
    for node in proto.graph.node:
        if node.op_type != "Gather" or len(node.input) != 2:
            continue
        dims = next((tuple(i.dims) for i in proto.graph.initializer if i.name == node.input[0]), None)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if dims is None or len(users.get(node.input[1], [])) != 1:
            continue
        x = _wrapped_index(proto, producers, producers.get(node.input[1]), dims[axis])
        if x is not None:
            node.input[1] = x
            count += 1
    if count:
        _drop_dead(proto)
    return count


def _drop_dead(proto: Any) -> None:
    """Remove nodes none of whose outputs is read (repeatedly), keeping the graph outputs' producers. Not in a graph
    with subgraphs (Loop/If/Scan bodies read outer names without listing them as inputs)."""
    graph = proto.graph
    if any(attr.type in (5, 10) for node in graph.node for attr in node.attribute):  # GRAPH, GRAPHS
        return
    wanted = {o.name for o in graph.output}
    while True:
        read = wanted | {name for node in graph.node for name in node.input}
        dead = [node for node in graph.node if not any(out in read for out in node.output)]
        if not dead:
            return
        for node in dead:
            graph.node.remove(node)
