"""Every example of every Keras -> PyTorch rule: before -> after (or unchanged), the output parses, and the full
--to torch rewrite of the example is idempotent (rewriting its output again changes nothing)."""
from __future__ import annotations

import libcst as cst
import pytest

from converter.rewrite import RewriteOptions, rewrite_source
from rules import discover_rules

TO_TORCH = RewriteOptions(to="torch")
CASES = [
    pytest.param(rule, example, id=f"{rule.id}-{i}")
    for rule in discover_rules("torch")
    for i, example in enumerate(rule.EXAMPLES)
]


def test_every_rule_documents_itself() -> None:
    rules = discover_rules("torch")
    assert len(rules) >= 20
    assert len({r.id for r in rules}) == len(rules)
    for rule in rules:
        assert rule.id and rule.description, rule
        assert rule.EXAMPLES, f"rule {rule.id} has no examples"


@pytest.mark.parametrize("rule, example", CASES)
def test_rule_example(rule, example) -> None:
    result = rewrite_source(example.before, TO_TORCH, rules=[rule])
    expected = example.before if example.after is None else example.after
    assert result.code == expected
    cst.parse_module(result.code)
    # A call-site rule alone is not idempotent on half-translated code (the layer is still Keras); the promise is
    # about the whole direction: its output, rewritten again, stays as it is.
    full = rewrite_source(example.before, TO_TORCH)
    cst.parse_module(full.code)
    assert rewrite_source(full.code, TO_TORCH).code == full.code
