"""Adapter around onnxscript's rewriter (0.7.2): its rules, tried on every node, gated by the op type their pattern's
root must have (``gated_by_root_op``). Used by ``converter.adapters.torch_onnx`` for the exporter's optimizer."""
from __future__ import annotations

from typing import Any


def gated_by_root_op(rule: Any) -> Any:
    """A copy of ``rule`` that declines, before matching, a node whose op type its pattern's root cannot be.

    The rewriter tries every rule on every node, and a rule with one output node fails on a different op type only
    after building a match state and its failure message (onnxscript 0.7.2, ``SimplePatternMatcher``; ~40 rules x
    ~500 nodes x 2 rounds: ViT-B/16's export 1.96 / 1.92 s before, 1.86 / 1.74 s gated). Only rules whose root op
    is a constant are gated, only the comparison the matcher makes first is made earlier, and a traced or verbose
    (debugging) call goes to the rule itself. The rule objects are onnxscript's singletons; they are copied, never
    changed."""
    import copy

    try:
        from onnxscript.rewriter._matcher import SimplePatternMatcher

        pattern = rule._target_pattern  # noqa: SLF001
        root = pattern.output_node if pattern.has_single_output_node else None
        ident = root.op_identifier() if root is not None else None
        if not isinstance(rule._matcher, SimplePatternMatcher) or ident is None:  # noqa: SLF001
            return rule
    except (AttributeError, ImportError):  # another onnxscript layout: the rule as it is
        return rule
    op_type, try_rewrite = ident[1], rule.try_rewrite
    gated = copy.copy(rule)

    def gated_try_rewrite(model: Any, graph_or_function: Any, node: Any, *, verbose: int | None = None,
                          tracer: Any = None) -> Any:
        if tracer is None and not verbose and node.op_type != op_type:
            return None
        return try_rewrite(model, graph_or_function, node, verbose=verbose, tracer=tracer)

    gated.try_rewrite = gated_try_rewrite
    return gated
