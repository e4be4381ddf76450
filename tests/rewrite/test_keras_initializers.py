"""Keras ``*_initializer=`` arguments become ``nn.init.*_`` calls on the torch layer (issue 13, item 5): a rewritten
model trained from scratch starts from the Keras original's distributions, not torch's defaults."""
from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest

from converter.rewrite import RewriteOptions, rewrite_source
from rules.keras_to_torch.initializers import torch_init

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "keras" / "initialized_classifier.py"


def _qname(node: cst.CSTNode) -> str | None:
    return "keras.initializers." + cst.Module(body=[]).code_for_node(node).rsplit(".", 1)[-1]


@pytest.mark.parametrize("spec, rank, expected", [
    ('"he_normal"', 2, 'nn.init.kaiming_normal_(t, nonlinearity="relu")'),
    ("initializers.HeUniform()", 2, 'nn.init.kaiming_uniform_(t, nonlinearity="relu")'),
    ("keras.initializers.he_normal(seed=3)", 2, 'nn.init.kaiming_normal_(t, nonlinearity="relu")'),
    ('"lecun_normal"', 2, 'nn.init.kaiming_normal_(t, nonlinearity="linear")'),
    ('"glorot_uniform"', 2, "nn.init.xavier_uniform_(t)"),
    ("GlorotNormal()", 2, "nn.init.xavier_normal_(t)"),
    ('"orthogonal"', 2, "nn.init.orthogonal_(t)"),
    ("Orthogonal(gain=2.0)", 2, "nn.init.orthogonal_(t, gain=2.0)"),
    ('"zeros"', 1, "nn.init.zeros_(t)"),
    ("Ones()", 1, "nn.init.ones_(t)"),
    ("Constant(0.5)", 1, "nn.init.constant_(t, 0.5)"),
    ("Constant(value=3)", 1, "nn.init.constant_(t, 3)"),
    ("RandomNormal(stddev=0.02)", 2, "nn.init.normal_(t, mean=0.0, std=0.02)"),
    ("RandomNormal(1.0, 0.02)", 1, "nn.init.normal_(t, mean=1.0, std=0.02)"),
    ("RandomUniform(minval=-0.1, maxval=0.1)", 2, "nn.init.uniform_(t, a=-0.1, b=0.1)"),
    ("TruncatedNormal(stddev=0.5)", 2, "nn.init.trunc_normal_(t, mean=0.0, std=0.5, a=-1.0, b=1.0)"),
    ('"glorot_uniform"', 1, None),  # torch has no fans for a 1-D tensor
    ("VarianceScaling(scale=0.1)", 2, None),
    ("RandomNormal(stddev=s)", 2, None),  # not a literal
])
def test_keras_initializer_spellings(spec: str, rank: int, expected: str | None) -> None:
    assert torch_init(cst.parse_expression(spec), "t", _qname, rank) == expected


def _rewrite(src: str, facts: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    return rewrite_source(src, RewriteOptions(to="torch", facts=facts or {}))


def test_lazy_layers_are_marked_not_silently_default() -> None:
    src = ("import keras\n\n\nclass M(keras.Model):\n    def __init__(self):\n        super().__init__()\n"
           "        self.fc = keras.layers.Dense(4, kernel_initializer='he_normal')\n"
           "        self.out = keras.layers.Dense(2)\n\n    def call(self, x):\n        return self.out(self.fc(x))\n")
    result = _rewrite(src)
    assert [t.rule_id for t in result.todos] == ["dense"]
    assert "kernel_initializer not applied; pass --input-shape" in result.todos[0].why
    assert "self.out = nn.LazyLinear(2)\n" in result.code


def test_unknown_initializer_is_marked_and_the_layer_kept() -> None:
    src = ("import keras\n\ninit = keras.initializers.RandomNormal(stddev=0.02)\n\n\nclass M(keras.Model):\n"
           "    def __init__(self):\n        super().__init__()\n"
           "        self.emb = keras.layers.Embedding(10, 4, embeddings_initializer=init)\n"
           "        self.e2 = keras.layers.Embedding(10, 4, embeddings_initializer='uniform')\n\n"
           "    def call(self, x):\n        return self.emb(x) + self.e2(x)\n")
    result = _rewrite(src)
    assert [t.rule_id for t in result.todos] == ["embedding", "embedding"]
    assert "embeddings_initializer=init has no nn.init equivalent" in result.todos[0].why
    assert "self.emb = nn.Embedding(10, 4)\n" in result.code


def test_fresh_torch_weights_have_the_keras_statistics() -> None:
    """Rewritten with --input-shape facts and built fresh (no weight transfer): each parameter is drawn from the
    distribution the Keras layer names, and the model still verifies against the original by weight transfer."""
    import torch

    from converter.rewrite.keras_probe import build_entry, probe
    from converter.rewrite.loading import import_code
    from converter.rewrite.verify import VerifyOptions, format_report
    from converter.input_shapes import unnamed_shapes
    from converter.rewrite.verify_torch import verify_keras_rewrite
    from tests.rewrite.test_real_world_fixtures import _frameworks

    _frameworks()
    facts = probe(FIXTURE, "InitializedClassifier", unnamed_shapes(["2x16x16x3"]), {})
    result = rewrite_source(FIXTURE.read_text(), RewriteOptions(to="torch", facts=facts), filename=str(FIXTURE))
    assert result.todos == ()
    torch.manual_seed(0)
    model = build_entry(import_code(result.code, "<initialized>", FIXTURE.parent), "InitializedClassifier", {},
                        "initialized_classifier")
    conv1 = model.conv1.weight.detach()  # he_normal: std sqrt(2 / fan_in), fan_in = 3*3*3
    assert abs(conv1.std().item() / (2 / 27) ** 0.5 - 1) < 0.15
    assert torch.all(model.conv1.bias == 0)
    gamma = model.bn1.weight.detach()  # RandomNormal(mean=1.0, stddev=0.02): torch's default would be all ones
    assert abs(gamma.mean().item() - 1) < 0.03 and 0.005 < gamma.std().item() < 0.04
    conv2 = model.conv2[0][1].weight.detach()  # glorot_uniform: bound sqrt(6 / (fan_in + fan_out))
    bound = (6 / (16 * 9 + 32 * 9)) ** 0.5
    assert conv2.abs().max().item() <= bound and conv2.abs().max().item() > 0.9 * bound
    hidden = model.hidden[0].weight.detach()  # Orthogonal(gain=1.5) on a (64, 32) weight: orthogonal columns
    torch.testing.assert_close(hidden.T @ hidden, 2.25 * torch.eye(32), atol=1e-4, rtol=0)
    assert torch.all(model.hidden[0].bias == 0.1)
    head = model.head.weight.detach()  # TruncatedNormal(stddev=0.01): cut at two standard deviations
    assert head.abs().max().item() <= 0.02 and 0.006 < head.std().item() < 0.012
    report = verify_keras_rewrite(FIXTURE, result, VerifyOptions(unnamed_shapes(["2x16x16x3"]),
                                                                 class_name="InitializedClassifier"))
    assert report.passed and report.max_abs_error < 1e-5, format_report(report)
