"""Property: a random model *source* built from supported idioms rewrites into source that parses, rewriting it
again changes nothing, and ``--verify`` (weights transferred, outputs compared in eval mode) passes.

Both directions: Keras sources in all three styles (Sequential, functional API, subclassed) and both spellings
(``keras`` / ``tf.keras``) -> PyTorch, and PyTorch ``nn.Module`` sources -> Keras (channels_last). Image sizes
include odd ones so 'same' padding with stride 2 is exercised on both parities. CI runs a bounded, seeded number
of examples; ``CROSSPORT_FUZZ_EXAMPLES`` raises it; ``CROSSPORT_FUZZ_LOG`` gets one JSON line per example.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import libcst as cst
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from converter.rewrite import RewriteOptions, rewrite_source  # noqa: E402

EXAMPLES = int(os.environ.get("CROSSPORT_FUZZ_EXAMPLES", "6"))
LOG = os.environ.get("CROSSPORT_FUZZ_LOG")
#: No shrinking phase: each example runs two frameworks; the failing source is printed and logged in full instead.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@dataclass(frozen=True)
class Layer:
    """One layer of a generated model: its Keras and its PyTorch spelling (either may be used)."""

    keras: str
    torch: str
    image: bool  # True while tensors are images (N, H, W, C) / (N, C, H, W)


def _record(direction: str, style: str, source: str, outcome: str, detail: str = "") -> None:
    if LOG:
        with open(LOG, "a") as fh:
            fh.write(json.dumps({"test": "rewrite", "direction": direction, "style": style, "outcome": outcome,
                                 "source": source, "detail": detail[:500]}) + "\n")


@st.composite
def _layers(draw: st.DrawFn, size: int, channels: int, for_torch: bool = False) -> list[Layer]:
    """A valid stack: image layers while the map is big enough, then a head (flatten or global pool) and Denses.

    ``for_torch``: only idioms the PyTorch -> Keras direction lists as supported (no nn.ZeroPad2d)."""
    out: list[Layer] = []
    kinds = ["conv", "conv", "bn", "pool", "act", "dwconv", "dropout"] + ([] if for_torch else ["pad"])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(kinds))
        if kind == "conv":
            k = draw(st.sampled_from([1, 2, 3]))
            s = draw(st.sampled_from([1, 2])) if size >= 4 else 1
            same = draw(st.booleans())
            if not same and size - k + 1 < 2:
                same = True
            f = draw(st.sampled_from([4, 6, 8]))
            act = draw(st.sampled_from(["None", '"relu"', '"gelu"', '"sigmoid"']))
            pad = '"same"' if same else '"valid"'
            torch_pad = ""  # the PyTorch spelling keeps to what torch states exactly: stride 1, odd kernels
            if same and s == 1 and k % 2 == 1:
                torch_pad = f", padding={k // 2}"
            elif same:
                s, k, torch_pad = 1, 3, ", padding=1"
            out.append(Layer(f"layers.Conv2D({f}, {k}, strides={s}, padding={pad}, activation={act})",
                             f"nn.Conv2d({channels}, {f}, {k}, stride={s}{torch_pad})", True))
            size = -(-size // s) if same else (size - k) // s + 1
            channels = f
        elif kind == "bn":
            out.append(Layer("layers.BatchNormalization()", f"nn.BatchNorm2d({channels})", True))
        elif kind == "pool" and size >= 4:
            same = draw(st.booleans()) and not for_torch  # torch's MaxPool2d(2) floors, Keras 'same' rounds up
            out.append(Layer(f"layers.MaxPooling2D(2{', padding=' + chr(34) + 'same' + chr(34) if same else ''})",
                             "nn.MaxPool2d(2)", True))
            size = -(-size // 2) if same else size // 2
        elif kind == "act":
            out.append(Layer('layers.Activation("tanh")', "nn.Tanh()", True))
        elif kind == "pad":
            out.append(Layer("layers.ZeroPadding2D(1)", "nn.ZeroPad2d(1)", True))
            size += 2
        elif kind == "dwconv":
            out.append(Layer('layers.DepthwiseConv2D(3, padding="same")',
                             f"nn.Conv2d({channels}, {channels}, 3, padding=1, groups={channels})", True))
        elif kind == "dropout":
            out.append(Layer("layers.Dropout(0.3)", "nn.Dropout(0.3)", True))
    if draw(st.booleans()):
        out.append(Layer("layers.Flatten()", "nn.Flatten()", False))
        features = size * size * channels
    else:
        out.append(Layer("layers.GlobalAveragePooling2D()", "nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())",
                         False))
        features = channels
    for _ in range(draw(st.integers(1, 2))):
        units = draw(st.sampled_from([3, 5, 8]))
        act = draw(st.sampled_from(["None", '"relu"', '"tanh"']))
        out.append(Layer(f"layers.Dense({units}, activation={act})", f"nn.Linear({features}, {units})", False))
        features = units
    return out


def _keras_source(style: str, spelling: str, stack: list[Layer], shape: tuple[int, ...]) -> str:
    head = "import keras\nfrom keras import layers\n" if spelling == "keras" else (
        "import tensorflow as tf\nfrom tensorflow import keras\nfrom tensorflow.keras import layers\n")
    items = [layer.keras for layer in stack]
    if style == "sequential":
        body = "".join(f"        {item},\n" for item in items)
        return head + f"\n\ndef build():\n    return keras.Sequential([\n        keras.Input(shape={shape}),\n{body}    ])\n"
    if style == "functional":
        lines = [f"    x = {item}(x)\n" for item in items]
        return (head + f"\n\ndef build():\n    inputs = keras.Input(shape={shape})\n    x = inputs\n" + "".join(lines)
                + "    return keras.Model(inputs, x)\n")
    inits = "".join(f"        self.l{i} = {item}\n" for i, item in enumerate(items))
    calls = "".join(f"        x = self.l{i}(x)\n" for i in range(len(items)))
    return (head + "\n\nclass Net(keras.Model):\n    def __init__(self, **kwargs):\n        super().__init__(**kwargs)\n"
            + inits + "\n    def call(self, x, training=None):\n" + calls + "        return x\n\n\ndef build():\n"
            "    return Net()\n")


def _torch_source(stack: list[Layer]) -> str:
    inits = "".join(f"        self.l{i} = {layer.torch}\n" for i, layer in enumerate(stack))
    calls = "".join(f"        x = self.l{i}(x)\n" for i in range(len(stack)))
    return ("import torch\nimport torch.nn as nn\n\n\nclass Net(nn.Module):\n    def __init__(self):\n"
            "        super().__init__()\n" + inits + "\n    def forward(self, x):\n" + calls + "        return x\n")


def _static_checks(source: str, options: RewriteOptions) -> str:
    result = rewrite_source(source, options)
    cst.parse_module(result.code)
    assert rewrite_source(result.code, options).code == result.code, "rewriting the output again changed it"
    return result.code


@FUZZ
@given(data=st.data(), style=st.sampled_from(["sequential", "functional", "subclassed"]),
       spelling=st.sampled_from(["keras", "tf.keras"]), size=st.sampled_from([8, 9, 12]),
       channels=st.sampled_from([1, 3]))
def test_random_keras_source_rewrites_and_verifies(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
                                                   style: str, spelling: str, size: int, channels: int) -> None:
    from converter.rewrite.keras_probe import probe
    from converter.rewrite.verify import VerifyOptions, format_report
    from converter.rewrite.verify_torch import verify_keras_rewrite

    stack = data.draw(_layers(size, channels))
    source = _keras_source(style, spelling, stack, (size, size, channels))
    path = tmp_path_factory.mktemp("fuzz") / "model.py"
    path.write_text(source)
    _static_checks(source, RewriteOptions(to="torch"))
    shapes = ((2, size, size, channels),)
    entry = "Net" if style == "subclassed" else "build"
    facts = probe(path, entry, shapes, {})
    result = rewrite_source(source, RewriteOptions(to="torch", facts=facts), filename=str(path))
    cst.parse_module(result.code)
    assert rewrite_source(result.code, RewriteOptions(to="torch")).code == result.code
    if result.todos:  # a construct the rules do not translate: acceptable only when marked with its reason
        assert all(t.rule_id and t.why for t in result.todos)
        _record("keras->torch", style, source, "named-todo", "; ".join(f"{t.rule_id}: {t.why}" for t in result.todos))
        return
    report = verify_keras_rewrite(path, result, VerifyOptions(shapes, class_name=entry))
    _record("keras->torch", style, source, "pass" if report.passed else "MISMATCH", format_report(report))
    assert report.passed, source + "\n" + result.code + "\n" + format_report(report)


@FUZZ
@given(data=st.data(), size=st.sampled_from([8, 9, 12]), channels=st.sampled_from([1, 3]))
def test_random_torch_source_rewrites_and_verifies(tmp_path_factory: pytest.TempPathFactory, data: st.DataObject,
                                                   size: int, channels: int) -> None:
    from converter.rewrite.verify import VerifyOptions, format_report, verify_rewrite

    stack = data.draw(_layers(size, channels, for_torch=True))
    source = _torch_source(stack)
    path = tmp_path_factory.mktemp("fuzz") / "model.py"
    path.write_text(source)
    options = RewriteOptions(to="keras", layout="channels_last")
    _static_checks(source, options)
    result = rewrite_source(source, options, filename=str(path))
    assert result.todos == (), (source, result.todos)
    report = verify_rewrite(path, result, VerifyOptions(((2, channels, size, size),)))
    _record("torch->keras", "subclassed", source, "pass" if report.passed else "MISMATCH", format_report(report))
    assert report.passed, source + "\n" + result.code + "\n" + format_report(report)
