"""Integer and dict inputs for ``convert``: ``--int-range`` per input (the grammar ``verify`` uses), token ids drawn
inside the model's own vocabulary by default, recorded integer dtypes kept with ``--input-shape``, and Keras models
built on a dict of inputs (keras-hub backbones) called by name on every route."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from converter.cli import main

pytestmark = pytest.mark.slow


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def token_pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ids -> Embedding(7 rows) -> Linear: token ids 7..9 (the old default range 0:10) raise in PyTorch."""
    import torch
    from torch import nn

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(7, 4)
            self.head = nn.Linear(4, 3)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            return self.head(self.emb(ids))

    torch.manual_seed(0)
    batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=64)
    ep = torch.export.export(Tokens().eval(), (torch.randint(0, 7, (2, 5)),), dynamic_shapes=({0: batch, 1: seq},))
    path = tmp_path_factory.mktemp("tokens") / "tokens.pt2"
    torch.export.save(ep, str(path))
    return path


def test_token_ids_stay_in_the_embedding_by_default(token_pt2: Path, tmp_path: Path) -> None:
    # --input-shape used to turn the recorded int64 ids into float32 inputs
    result = _cli("convert", str(token_pt2), "-o", str(tmp_path / "t.onnx"), "--input-shape", "ids=3x6",
                  "--no-manifest")
    assert result.exit_code == 0, result.output
    assert "int64" in result.output


def test_int_range_per_input_reaches_the_inputs(token_pt2: Path, tmp_path: Path) -> None:
    result = _cli("convert", str(token_pt2), "-o", str(tmp_path / "t.onnx"), "--int-range", "ids=0:1000")
    assert result.exit_code == 7, result.output  # ids past the 7-row table: the model does not run
    assert "does not run" in result.output and not (tmp_path / "t.onnx").exists()
    result = _cli("convert", str(token_pt2), "-o", str(tmp_path / "t.onnx"), "--int-range", "nope=0:3")
    assert result.exit_code == 7 and "not inputs of the model" in result.output, result.output
    result = _cli("convert", str(token_pt2), "-o", str(tmp_path / "t.onnx"), "--int-range", "5:2")
    assert result.exit_code == 7 and "--int-range" in result.output, result.output


def _dict_keras(path: Path) -> None:
    """A functional Keras model on a dict of integer inputs with a dict of outputs, the shape of keras-hub's."""
    from converter.frameworks import keras

    k = keras()
    k.utils.set_random_seed(0)
    ids = k.Input((None,), dtype="int32", name="token_ids")
    mask = k.Input((None,), dtype="int32", name="padding_mask")
    x = k.layers.Embedding(7, 8, name="tokens")(ids)
    x = x * k.ops.expand_dims(k.ops.cast(mask, "float32"), -1)
    seq = k.layers.Dense(4, name="proj")(x)
    pooled = k.layers.Dense(2, name="pool")(k.ops.sum(seq, axis=1))
    k.Model({"token_ids": ids, "padding_mask": mask}, {"sequence_output": seq, "pooled_output": pooled}).save(str(path))


@pytest.mark.parametrize("route", ["keras-native", "onnx"])
def test_dict_input_keras_model_converts_to_pytorch(tmp_path: Path, route: str) -> None:
    import torch

    src = tmp_path / "dict.keras"
    _dict_keras(src)
    out = tmp_path / "dict.pt2"
    result = _cli("convert", str(src), "-o", str(out), "--route", route, "--input-shape", "token_ids=2x5",
                  "--input-shape", "padding_mask=2x5", "--no-manifest")
    assert result.exit_code == 0, result.output
    assert "input  padding_mask" in result.output and "input  token_ids" in result.output
    module = torch.export.load(str(out)).module()
    # inputs in Keras' flattened order (sorted keys: padding_mask, token_ids); biases start at zero, so an
    # all-zero mask zeroes every output and an all-one mask does not
    ids = torch.randint(1, 7, (3, 5), dtype=torch.int32)
    masked = module(torch.zeros(3, 5, dtype=torch.int32), ids)
    open_ = module(torch.ones(3, 5, dtype=torch.int32), ids)
    assert len(masked) == 2 and all(float(o.abs().max()) == 0 for o in masked)
    assert all(float(o.abs().max()) > 0 for o in open_)


def test_keras_hub_bert_backbone_converts_to_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("keras_hub")
    from converter import convert
    from converter.frameworks import keras

    keras().utils.set_random_seed(0)
    import keras_hub

    backbone = keras_hub.models.BertBackbone(vocabulary_size=50, num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=16, num_segments=2)
    src = tmp_path / "bert.keras"
    backbone.save(str(src))
    result = convert(str(src), output=str(tmp_path / "bert.pt2"), manifest=False,
                     input_shapes=(("token_ids", (2, 6)), ("segment_ids", (2, 6)), ("padding_mask", (2, 6))))
    assert result.passed, result.report.format_text()  # segment ids past num_segments would raise in TF
    assert result.report.trainable_params["pytorch"] == result.report.trainable_params["keras"]
    assert result.report.dynamic_batch


def test_integer_bounds_follow_nested_models() -> None:
    """A backbone nested in a task model: its embeddings still bound the outer model's inputs."""
    from converter import keras_io
    from converter.frameworks import keras

    k = keras()
    ids, seg = k.Input((None,), dtype="int32", name="token_ids"), k.Input((None,), dtype="int32", name="seg")
    inner = k.Model({"token_ids": ids, "seg": seg},
                    k.layers.Embedding(30, 4)(ids) + k.layers.Embedding(2, 4)(seg))
    outer_in = {n: k.Input((6,), dtype="int32", name=n) for n in ("token_ids", "seg", "attention_mask")}
    outer = k.Model(outer_in, k.layers.Dense(2)(inner({"token_ids": outer_in["token_ids"], "seg": outer_in["seg"]})))
    assert keras_io.integer_bounds(outer) == {"token_ids": (0, 30), "seg": (0, 2), "attention_mask": (0, 2)}
