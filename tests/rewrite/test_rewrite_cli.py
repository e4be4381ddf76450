"""`crossport rewrite` / `rules` / `transfer` through Click's CliRunner, plus the no-heavy-imports promise."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from converter.cli import main
from tests_rewrite_support import heavy_modules_after

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "fixtures" / "sources"
MNIST = SOURCES / "mnist_cnn.py"


def invoke(*args: str) -> "object":
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_options() -> None:
    result = invoke("rewrite", "--help")
    assert result.exit_code == 0
    for option in ("--to", "-o", "--in-place", "--diff", "--check", "--layout", "--verify", "--input-shape"):
        assert option in result.output


def test_stdout_is_the_rewritten_code_and_summary_lists_non_model_code() -> None:
    result = invoke("rewrite", str(MNIST), "--to", "keras")
    assert result.exit_code == 0
    assert "class Net(keras.Model):" in result.stdout
    assert "not rewritten (not model code): def train" in result.stderr


def test_diff() -> None:
    result = invoke("rewrite", str(MNIST), "--to", "keras", "--diff")
    assert result.exit_code == 0
    assert "-class Net(nn.Module):" in result.stdout and "+class Net(keras.Model):" in result.stdout


def test_check_exit_codes(tmp_path: Path) -> None:
    assert invoke("rewrite", str(MNIST), "--to", "keras", "--check").exit_code == 1
    out = tmp_path / "net.py"
    assert invoke("rewrite", str(MNIST), "--to", "keras", "-o", str(out)).exit_code == 0
    assert invoke("rewrite", str(out), "--to", "keras", "--check").exit_code == 0  # idempotent: nothing to do


def test_check_fails_while_a_todo_remains(tmp_path: Path) -> None:
    src = tmp_path / "pool.py"
    src.write_text("import torch.nn as nn\n\n\nclass P(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                   "        self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)\n")
    out = tmp_path / "out.py"
    result = invoke("rewrite", str(src), "--to", "keras", "-o", str(out))
    assert result.exit_code == 0 and f"{out}:9: TODO(pooling)" in result.stderr
    check = invoke("rewrite", str(out), "--to", "keras", "--check")
    assert check.exit_code == 1 and "TODO" in check.stderr


def test_output_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "net.py"
    out.write_text("keep me\n")
    result = invoke("rewrite", str(MNIST), "--to", "keras", "-o", str(out))
    assert result.exit_code == 6 and "--force" in result.stderr
    assert out.read_text() == "keep me\n"
    assert invoke("rewrite", str(MNIST), "--to", "keras", "-o", str(out), "--force").exit_code == 0
    assert "keras.Model" in out.read_text()


def test_directory_tree_output(tmp_path: Path) -> None:
    out = tmp_path / "tree"
    result = invoke("rewrite", str(SOURCES), "--to", "keras", "-o", str(out), "-q")
    assert result.exit_code == 0
    assert {p.name for p in out.glob("*.py")} >= {"mnist_cnn.py", "unet.py"}


def test_in_place_is_the_only_way_to_touch_the_source(tmp_path: Path) -> None:
    src = tmp_path / "net.py"
    src.write_text(MNIST.read_text())
    assert invoke("rewrite", str(src), "--to", "keras", "-o", str(src)).exit_code == 6
    assert invoke("rewrite", str(src), "--to", "keras", "--in-place").exit_code == 0
    assert "keras.Model" in src.read_text()


def test_unparsable_file_is_one_line_with_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("class Net(nn.Module:\n    pass\n")
    result = invoke("rewrite", str(bad), "--to", "keras")
    assert result.exit_code == 4
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and "bad.py" in result.stderr


def test_missing_file_exit_code(tmp_path: Path) -> None:
    result = invoke("rewrite", str(tmp_path / "nope.py"), "--to", "keras")
    assert result.exit_code == 3 and "Traceback" not in result.stderr


def test_file_without_model_class(tmp_path: Path) -> None:
    plain = tmp_path / "plain.py"
    plain.write_text("import numpy as np\n\nx = np.zeros(3)\n")
    result = invoke("rewrite", str(plain), "--to", "keras")
    assert result.exit_code == 0 and result.stdout == plain.read_text()
    assert "no torch nn.Module subclass found" in result.stderr
    verify = invoke("rewrite", str(plain), "--to", "keras", "--verify", "--input-shape", "1x3")
    assert verify.exit_code == 9 and "no nn.Module subclass" in verify.stderr


def test_exclusive_modes_are_a_usage_error() -> None:
    assert invoke("rewrite", str(MNIST), "--to", "keras", "--diff", "--check").exit_code == 2


def test_verify_passes_prints_table_and_writes(tmp_path: Path) -> None:
    out = tmp_path / "mlp.py"
    result = invoke("rewrite", str(SOURCES / "mlp_layernorm.py"), "--to", "keras", "-o", str(out), "--verify",
                    "--input-shape", "3x20", "--init-kwargs", '{"hidden": 16}')
    assert result.exit_code == 0, result.output
    assert "max_abs" in result.output and "verify passed" in result.output and out.exists()


def test_verify_mismatch_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "mlp.py"
    result = invoke("rewrite", str(SOURCES / "mlp_layernorm.py"), "--to", "keras", "-o", str(out), "--verify",
                    "--input-shape", "3x20", "--atol", "0", "--rtol", "0", "--elementwise")
    assert result.exit_code == 1 and not out.exists()
    assert "verify FAILED" in result.output


def test_input_shape_traces_the_torch_model_and_keeps_channels_last() -> None:
    """``x.size()[1:]`` in a helper: without --input-shape the file falls back to channels_first; with it the torch
    model runs once and the helper reads the channels-first shape of the NHWC tensor."""
    src = str(SOURCES / "lenet_num_flat.py")
    plain = invoke("rewrite", src, "--to", "keras")
    assert plain.exit_code == 0 and "layout channels_first" in plain.stderr
    traced = invoke("rewrite", src, "--to", "keras", "--input-shape", "2x1x32x32")
    assert traced.exit_code == 0, traced.output
    assert "layout channels_last" in traced.stderr and "TODO" not in traced.stdout
    assert "size = keras.ops.shape(keras.ops.moveaxis(x, -1, 1))[1:]" in traced.stdout


def test_input_shape_with_several_models_traces_the_chosen_class() -> None:
    """gan_pair: without --class there is no one model to run, so the rewrite is the untraced one (no error); with
    --class Discriminator the discriminator's group stays channels_last too."""
    src = str(SOURCES / "gan_pair.py")
    untraced = invoke("rewrite", src, "--to", "keras", "--input-shape", "2x3x8x8")
    assert untraced.exit_code == 0 and "Discriminator channels_first" in untraced.stderr, untraced.output
    traced = invoke("rewrite", src, "--to", "keras", "--input-shape", "2x3x8x8", "--class", "Discriminator")
    assert traced.exit_code == 0 and "channels_first" not in traced.stderr, traced.output


def test_rules_lists_every_rule() -> None:
    from rules import discover_rules

    result = invoke("rules")
    assert result.exit_code == 0
    for rule in discover_rules("keras"):
        assert rule.id in result.stdout


def test_transfer_checkpoint_into_keras(tmp_path: Path) -> None:
    import torch

    sys.path.insert(0, str(SOURCES))
    try:
        from gru_seq import GRUTagger
    finally:
        sys.path.remove(str(SOURCES))
    model = GRUTagger()
    ckpt = tmp_path / "gru.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    code = tmp_path / "gru_keras.py"
    assert invoke("rewrite", str(SOURCES / "gru_seq.py"), "--to", "keras", "-o", str(code), "-q").exit_code == 0
    out = tmp_path / "gru.keras"
    result = invoke("transfer", str(ckpt), "--into", f"{code}:GRUTagger", "--source", str(SOURCES / "gru_seq.py"),
                    "-o", str(out), "--input-shape", "2x5x8")
    assert result.exit_code == 0, result.output
    assert out.exists() and "verify passed" in result.output
    again = invoke("transfer", str(ckpt), "--into", f"{code}:GRUTagger", "--source", str(SOURCES / "gru_seq.py"),
                   "-o", str(out), "--input-shape", "2x5x8")
    assert again.exit_code == 6
    bare = tmp_path / "gru_unverified.keras"
    refused = invoke("transfer", str(ckpt), "--into", f"{code}:GRUTagger", "-o", str(bare), "--input-shape", "2x5x8")
    assert refused.exit_code == 10 and "--unverified" in refused.stderr and not bare.exists()
    written = invoke("transfer", str(ckpt), "--into", f"{code}:GRUTagger", "-o", str(bare), "--input-shape", "2x5x8",
                     "--unverified")
    assert written.exit_code == 0 and "UNVERIFIED" in written.stdout and bare.exists()


def test_transfer_refuses_pickled_objects(tmp_path: Path) -> None:
    import torch

    ckpt = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "cfg": object.__new__(_Opaque)}, ckpt)
    (tmp_path / "x.py").write_text("X = 1\n")
    result = invoke("transfer", str(ckpt), "--into", f"{tmp_path / 'x.py'}:X", "--source", str(MNIST),
                    "-o", str(tmp_path / "x.keras"), "--input-shape", "1x1x28x28")
    assert result.exit_code == 8, result.output
    assert "weights_only" in result.stderr


class _Opaque:
    pass


@pytest.mark.parametrize("args", [["rewrite", str(MNIST), "--to", "keras"], ["rules"], ["--help"]])
def test_no_heavy_imports_without_verify(args: list[str]) -> None:
    assert heavy_modules_after(args, str(REPO)) == []
