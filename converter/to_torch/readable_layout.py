"""``--nchw`` in a readable ``model.py``: the channels-first permutes at the fx graph's inputs and outputs, and the
permute pairs that then cancel out."""
from __future__ import annotations

from typing import Any


def channels_first(gm: Any, nhwc_inputs: tuple[bool, ...], nhwc_outputs: tuple[bool, ...]) -> None:
    """Permute the flagged NHWC inputs to NCHW right after the placeholders and the flagged outputs back."""
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for node, flag in zip(placeholders, nhwc_inputs):
        if not flag:
            continue
        users = list(node.users)
        with graph.inserting_after(node):
            permuted = graph.call_method("permute", (node, 0, 2, 3, 1))
        for user in users:
            user.replace_input_with(node, permuted)
    if not any(nhwc_outputs):
        return
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    with graph.inserting_before(output):
        items = [graph.call_method("permute", (item, 0, 3, 1, 2)) if flag else item
                 for item, flag in zip(items, list(nhwc_outputs) + [False] * len(items))]
    output.args = (tuple(items) if isinstance(result, (tuple, list)) else items[0],)


def cancel_permutes(gm: Any) -> None:
    """``x.permute(p).permute(q)`` that composes to the identity is ``x`` (``--nchw`` meets the ONNX graph's own
    NHWC->NCHW transpose at the input)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_method" or node.target != "permute":
            continue
        inner = node.args[0]
        if getattr(inner, "op", None) != "call_method" or inner.target != "permute":
            continue
        p, q = list(inner.args[1:]), list(node.args[1:])
        if len(p) == len(q) and all(isinstance(i, int) for i in p + q) and [p[i] for i in q] == list(range(len(p))):
            node.replace_all_uses_with(inner.args[0])
