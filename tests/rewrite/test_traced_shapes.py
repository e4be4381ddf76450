"""--to keras --input-shape: one traced torch pass tells the rules each tensor's rank and Keras form, so the code
that depends on NCHW axis order (``x.size()[1:]``, ``squeeze(-1)``, ``view(b, c, 1, 1)``, ``permute(0, 2, 1)``)
is rewritten exactly in channels_last instead of falling back to channels_first or leaving TODOs.

The exactness of ``rules.traced`` is checked on arrays (numpy stands for torch, keras.ops runs the rewrite); the
fixtures are traced, rewritten and verified against the original with real torch and Keras."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import libcst as cst
import numpy as np
import pytest

from converter.rewrite import RewriteOptions, rewrite_source
from rules import traced as exact
from rules.cst_tools import lit, tuple_of
from rules.traced import TracedCall

SOURCES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
#: fixture -> (input shape, class, layout of the rewrite without --input-shape)
CASES = {
    "lenet_num_flat": ("2x1x32x32", "Net", "channels_first"),  # x.size()[1:] in a helper
    "se_block": ("2x3x10x10", "SEBlock", "channels_first"),  # b, c, _, _ = x.size(); view(b, c, 1, 1)
    "dcgan_discriminator": ("2x3x16x16", "Discriminator", "channels_first"),  # view(-1, 1).squeeze(1)
    "text_cnn": ("2x12", "TextCNN", "channels_first"),  # embeddings permute(0, 2, 1) into Conv1d
    "gan_pair": ("2x3x8x8", "Discriminator", "channels_first"),  # view(n, 16, -1).mean(2)
    "gap_squeeze": ("2x3x8x8", "AllConvNet", "channels_first"),  # squeeze(-1).squeeze(-1) after global pooling
    "conv1d_sensor": ("2x20x3", "SensorCNN", "channels_first"),  # permute(0, 2, 1), mean(dim=-1), squeeze(1)
    "cifar_tutorial": ("2x3x32x32", "Net", "channels_last"),  # view(-1, 16 * 5 * 5)
    "resnet_block": ("2x3x16x16", "TinyResNet", "channels_last"),  # out.view(out.size(0), -1) after conv blocks
    "conv_heads": ("2x1x8x8", "TwoHeadNet", "channels_last"),  # mean(dim=(2, 3)), torch.flatten(p, 1), amax
}


def _frameworks() -> None:
    from converter.frameworks import tensorflow

    tensorflow()  # TensorFlow before torch, as --verify imports them


def _shapes(text: str) -> tuple[tuple[int, ...], ...]:
    return (tuple(int(d) for d in text.split("x")),)


@pytest.mark.parametrize("name", sorted(CASES))
def test_without_input_shape_the_rewrite_is_unchanged(name: str) -> None:
    """No trace, no facts: the automatic layout choice decides as before (channels_first where NCHW order shows)."""
    path = SOURCES / f"{name}.py"
    shape, cls, layout = CASES[name]
    result = rewrite_source(path.read_text(), RewriteOptions(layout_auto=True), filename=str(path))
    assert result.layout_of(cls) == layout


@pytest.mark.parametrize("name", sorted(CASES))
def test_traced_rewrite_stays_channels_last_and_verifies(name: str) -> None:
    from converter.rewrite.torch_trace import trace_shapes
    from converter.rewrite.verify import VerifyOptions, format_report, verify_rewrite

    _frameworks()
    path = SOURCES / f"{name}.py"
    shape, cls, _ = CASES[name]
    facts = trace_shapes(path, cls, _shapes(shape), {})
    assert facts
    result = rewrite_source(path.read_text(), RewriteOptions(layout_auto=True, facts=facts), filename=str(path))
    assert result.layout_of(cls) == "channels_last" and not result.todos, (result.notes, result.todos)
    assert rewrite_source(result.code, RewriteOptions()).code == result.code
    report = verify_rewrite(path, result, VerifyOptions(_shapes(shape), class_name=cls))
    assert report.passed and report.layout == "channels_last", format_report(report)
    assert report.max_abs_error <= 1e-5


def test_trace_follows_each_tensors_form() -> None:
    """text_cnn: the embedding is plain (N, L, E); its permute feeds a Conv1d, so Keras holds the result moved --
    which is the embedding itself: the permute disappears."""
    from converter.rewrite.torch_trace import trace_shapes

    _frameworks()
    facts = dict(trace_shapes(SOURCES / "text_cnn.py", "TextCNN", ((2, 12),), {}))
    permute = facts["TextCNN.forward|self.embedding(tokens).permute(0, 2, 1)|0"]
    assert permute == TracedCall((2, 12, 8), False, (2, 8, 12), True)
    result = rewrite_source((SOURCES / "text_cnn.py").read_text(), RewriteOptions(facts=tuple(facts.items())))
    assert "x = self.embedding(tokens)\n" in result.code


def test_calls_made_inside_torch_are_not_keyed_to_the_users_line(tmp_path: Path) -> None:
    """nn.Flatten calls ``flatten`` inside torch; only the user's own calls become facts."""
    from converter.rewrite.torch_trace import trace_shapes

    _frameworks()
    src = tmp_path / "flat.py"
    src.write_text("import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   "        self.conv = nn.Conv2d(1, 2, 3)\n        self.flat = nn.Flatten()\n\n"
                   "    def forward(self, x):\n        return self.flat(self.conv(x)).unsqueeze(1)\n")
    facts = dict(trace_shapes(src, "M", ((1, 1, 5, 5),), {}))
    assert list(facts) == ["M.forward|self.flat(self.conv(x)).unsqueeze(1)|0"]


# -- rules.traced on arrays: numpy computes what torch does, keras.ops runs the emitted code ----------------------
def _moved(a: np.ndarray, moved: bool) -> np.ndarray:
    return np.moveaxis(a, 1, -1) if moved and a.ndim >= 3 else a


def _run(node: cst.BaseExpression, x: np.ndarray) -> np.ndarray:
    import keras

    _frameworks()
    code = cst.Module(body=[]).code_for_node(node)
    return np.asarray(keras.ops.convert_to_numpy(eval(code, {"keras": keras, "x": x})))  # noqa: S307 - our own code


_X = cst.Name("x")
#: (label, torch-side numpy op, input shape, input moved, output moved, emitter)
_OPS: list[tuple[str, Callable[[np.ndarray], np.ndarray], tuple[int, ...], bool, bool,
                 Callable[[TracedCall], cst.BaseExpression | None]]] = [
    ("permute plain->moved", lambda a: a.transpose(0, 2, 1), (2, 5, 3), False, True,
     lambda f: exact.permute(_X, (0, 2, 1), f)),
    ("permute moved->moved", lambda a: a.transpose(0, 2, 1), (2, 5, 3), True, True,
     lambda f: exact.permute(_X, (0, 2, 1), f)),
    ("permute moved->plain rank 4", lambda a: a.transpose(0, 2, 3, 1), (2, 3, 4, 5), True, False,
     lambda f: exact.permute(_X, (0, 2, 3, 1), f)),
    ("transpose(1, 2) rank 4", lambda a: a.swapaxes(1, 2), (2, 3, 4, 5), True, True,
     lambda f: exact.permute(_X, exact.swap(lit(1), lit(2), 4) or (), f)),
    ("view 1x1 map to (N, C)", lambda a: a.reshape(2, 8), (2, 8, 1, 1), True, False,
     lambda f: exact.reshape(_X, tuple_of([lit(2), lit(8)]), f)),
    ("view (N, C) to (N, C, 1, 1)", lambda a: a.reshape(2, 8, 1, 1), (2, 8), False, True,
     lambda f: exact.reshape(_X, tuple_of([lit(2), lit(8), lit(1), lit(1)]), f)),
    ("view map to (N, C, H*W)", lambda a: a.reshape(2, 4, 9), (2, 4, 3, 3), True, False,
     lambda f: exact.reshape(_X, tuple_of([lit(2), lit(4), lit(9)]), f)),
    ("view (N, C, H*W) back to a map", lambda a: a.reshape(2, 4, 3, 3), (2, 4, 9), False, True,
     lambda f: exact.reshape(_X, tuple_of([lit(2), lit(4), lit(3), lit(3)]), f)),
    ("squeeze(-1) spatial", lambda a: a.squeeze(-1), (2, 8, 3, 1), True, True,
     lambda f: exact.squeeze(_X, lit(-1), f, expand=False)),
    ("squeeze(-1) to plain rank 3", lambda a: a.squeeze(-1), (2, 8, 3, 1), True, False,
     lambda f: exact.squeeze(_X, lit(-1), f, expand=False)),
    ("squeeze(1) channel", lambda a: a.squeeze(1), (2, 1, 5), True, False,
     lambda f: exact.squeeze(_X, lit(1), f, expand=False)),
    ("unsqueeze(1) into Conv1d", lambda a: a[:, None, :], (2, 5), False, True,
     lambda f: exact.squeeze(_X, lit(1), f, expand=True)),
    ("unsqueeze(-1) spatial", lambda a: a[..., None], (2, 4, 5), True, True,
     lambda f: exact.squeeze(_X, lit(-1), f, expand=True)),
    ("mean(dim=(2, 3))", lambda a: a.mean(axis=(2, 3)), (2, 4, 3, 5), True, False,
     lambda f: exact.reduce("mean", _X, tuple_of([lit(2), lit(3)]), None, f)),
    ("mean(dim=1, keepdim=True)", lambda a: a.mean(axis=1, keepdims=True), (2, 4, 3, 5), True, True,
     lambda f: exact.reduce("mean", _X, lit(1), cst.Name("True"), f)),
    ("sum(dim=-1) rank 3", lambda a: a.sum(axis=-1), (2, 4, 5), True, False,
     lambda f: exact.reduce("sum", _X, lit(-1), None, f)),
    ("amax(dim=2) kept moved", lambda a: a.max(axis=2), (2, 4, 3, 5), True, True,
     lambda f: exact.reduce("max", _X, lit(2), None, f)),
    ("amax(dim=2) read plain", lambda a: a.max(axis=2), (2, 4, 3, 5), True, False,
     lambda f: exact.reduce("max", _X, lit(2), None, f)),
]


@pytest.mark.parametrize("label", [case[0] for case in _OPS])
def test_traced_code_computes_what_torch_computes(label: str) -> None:
    _, torch_op, shape, before_moved, after_moved, emit = next(c for c in _OPS if c[0] == label)
    a = np.arange(math.prod(shape), dtype=np.float32).reshape(shape)
    expected = torch_op(a)
    fact = TracedCall(shape, before_moved and len(shape) >= 3, expected.shape, after_moved and expected.ndim >= 3)
    node = emit(fact)
    assert node is not None
    np.testing.assert_array_equal(_run(node, _moved(a, fact.before_moved)), _moved(expected, fact.after_moved))


def test_size_is_the_channels_first_shape() -> None:
    fact = TracedCall((2, 3, 4, 5), True, (2, 3, 4, 5), False)
    assert tuple(int(d) for d in _run(exact.shape_of(_X, fact), np.zeros((2, 4, 5, 3), np.float32))) == (2, 3, 4, 5)


def test_a_flattened_feature_map_stays_an_nhwc_flatten() -> None:
    """(N, C*H*W) from a map keeps Keras' NHWC order: the weight transfer permutes the reading Linear's rows."""
    fact = TracedCall((2, 4, 3, 3), True, (2, 36), False)
    a = np.arange(72, dtype=np.float32).reshape(2, 4, 3, 3)
    got = _run(exact.reshape(_X, tuple_of([lit(-1), lit(36)]), fact) or _X, _moved(a, True))
    np.testing.assert_array_equal(got, _moved(a, True).reshape(2, 36))
