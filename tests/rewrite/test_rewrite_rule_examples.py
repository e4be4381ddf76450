"""Every example of every rule: before -> after (or unchanged), the output parses, and rewriting is idempotent."""
from __future__ import annotations

import libcst as cst
import pytest

from converter.rewrite import RewriteOptions, rewrite_source
from rules import discover_rules

CASES = [
    pytest.param(rule, i, example, id=f"{rule.id}-{i}")
    for rule in discover_rules("keras")
    for i, example in enumerate(rule.EXAMPLES)
]


def test_every_rule_documents_itself() -> None:
    rules = discover_rules("keras")
    assert len(rules) >= 10
    for rule in rules:
        assert rule.id and rule.description, rule
        assert rule.EXAMPLES, f"rule {rule.id} has no examples"


@pytest.mark.parametrize("rule, index, example", CASES)
def test_rule_example(rule, index, example) -> None:
    options = RewriteOptions(layout=example.layout)
    result = rewrite_source(example.before, options, rules=[rule])
    expected = example.before if example.after is None else example.after
    assert result.code == expected
    cst.parse_module(result.code)
    again = rewrite_source(result.code, options, rules=[rule])
    assert again.code == result.code, "rewriting the output again must change nothing"
