"""`crossport rewrite --to torch` and `crossport transfer model.keras` through Click's CliRunner."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from converter.cli import main
from tests_rewrite_support import heavy_modules_after

REPO = Path(__file__).resolve().parents[2]
KERAS = REPO / "fixtures" / "sources" / "keras"
MNIST = KERAS / "mnist_sequential.py"
CNN = KERAS / "functional_cnn.py"


def invoke(*args: str) -> "object":
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_stdout_summary_and_non_model_code() -> None:
    result = invoke("rewrite", str(MNIST), "--to", "torch")
    assert result.exit_code == 0
    assert "return nn.Sequential(" in result.stdout and "nn.LazyConv2d(32, (3, 3))" in result.stdout
    assert "rules applied:" in result.stderr and "sequential×1" in result.stderr
    assert "not rewritten (not model code): def train" in result.stderr


def test_todos_are_listed_with_file_line_and_check_fails(tmp_path: Path) -> None:
    out = tmp_path / "cnn.py"
    result = invoke("rewrite", str(CNN), "--to", "torch", "-o", str(out))
    assert result.exit_code == 0
    assert f"{out}:" in result.stderr and "TODO(conv): padding='same' with stride > 1" in result.stderr
    assert invoke("rewrite", str(out), "--to", "torch", "--check").exit_code == 1


def test_check_diff_and_idempotence(tmp_path: Path) -> None:
    assert invoke("rewrite", str(MNIST), "--to", "torch", "--check").exit_code == 1
    diff = invoke("rewrite", str(MNIST), "--to", "torch", "--diff")
    assert diff.exit_code == 0 and "-    return keras.Sequential(" in diff.stdout and "+    return nn.Sequential(" in diff.stdout
    out = tmp_path / "mnist.py"
    assert invoke("rewrite", str(MNIST), "--to", "torch", "-o", str(out), "-q").exit_code == 0
    assert invoke("rewrite", str(out), "--to", "torch", "--check").exit_code == 0


def test_input_shape_gives_concrete_sizes_and_verify_passes(tmp_path: Path) -> None:
    out = tmp_path / "cnn.py"
    result = invoke("rewrite", str(CNN), "--to", "torch", "-o", str(out), "--verify", "--input-shape", "2x32x32x3")
    assert result.exit_code == 0, result.output
    code = out.read_text()
    # 'same' with stride 2 on 32 pixels pads (0, 1): explicit and asymmetric, exactly Keras' padding.
    assert "nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(3, 16, 3, stride=2, bias=False))" in code and "nn.BatchNorm2d(16, eps=0.001, momentum=0.01)" in code
    assert "verify passed" in result.output and "TODO" not in code


def test_verify_mismatch_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "cnn.py"
    result = invoke("rewrite", str(CNN), "--to", "torch", "-o", str(out), "--verify", "--input-shape", "2x32x32x3",
                    "--atol", "0", "--rtol", "0", "--elementwise")
    assert result.exit_code == 1 and not out.exists()
    assert "verify FAILED" in result.output


def test_transfer_keras_file_to_state_dict_and_exported_program(tmp_path: Path) -> None:
    import keras
    import numpy as np
    import torch

    code = tmp_path / "cnn_torch.py"
    assert invoke("rewrite", str(CNN), "--to", "torch", "-o", str(code), "--input-shape", "1x32x32x3", "-q").exit_code == 0
    sys.path.insert(0, str(KERAS))
    try:
        from functional_cnn import build_cnn
    finally:
        sys.path.remove(str(KERAS))
    keras.backend.clear_session()
    model = build_cnn()
    model(np.zeros((1, 32, 32, 3), "float32"))
    for layer in model.layers:  # "trained": weights and BN statistics that are not the initial ones
        layer.set_weights([np.random.default_rng(1).normal(size=w.shape).astype("float32") ** 2 for w in layer.get_weights()])
    saved = tmp_path / "cnn.keras"
    model.save(saved)
    pt = tmp_path / "cnn.pt"
    result = invoke("transfer", str(saved), "--into", f"{code}:build_cnn", "-o", str(pt), "--input-shape", "2x32x32x3")
    assert result.exit_code == 0, result.output
    assert "verify passed" in result.output
    state = torch.load(pt, weights_only=True)
    assert "batch_normalization.running_var" in state and state["conv2d.1.weight"].shape == (16, 3, 3, 3)
    pt2 = tmp_path / "cnn.pt2"
    assert invoke("transfer", str(saved), "--into", f"{code}:build_cnn", "-o", str(pt2), "--input-shape",
                  "2x32x32x3").exit_code == 0
    program = torch.export.load(pt2)
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    got = program.module()(torch.from_numpy(np.moveaxis(x, -1, 1).copy())).detach().numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-4, rtol=1e-4)


def test_transfer_keras_file_refuses_unsafe_lambda(tmp_path: Path) -> None:
    import keras

    inputs = keras.Input(shape=(4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    saved = tmp_path / "lambda.keras"
    model.save(saved)
    (tmp_path / "m.py").write_text("import torch.nn as nn\n\n\nclass M(nn.Module):\n    pass\n")
    result = invoke("transfer", str(saved), "--into", f"{tmp_path / 'm.py'}:M", "-o", str(tmp_path / "m.pt"),
                    "--input-shape", "1x4")
    assert result.exit_code == 8, result.output
    assert "--trust-code" in result.stderr and not (tmp_path / "m.pt").exists()
    for flag in ("--trust-code", "--trust-keras"):  # --trust-keras: the old spelling, kept hidden for scripts
        trusted = invoke("transfer", str(saved), "--into", f"{tmp_path / 'm.py'}:M", "-o", str(tmp_path / "m.pt"),
                         "--input-shape", "1x4", flag)
        assert trusted.exit_code != 8 and "contains Python code" not in trusted.stderr, trusted.output
    assert "--trust-keras" not in invoke("transfer", "--help").output


@pytest.mark.parametrize("args", [["rewrite", str(MNIST), "--to", "torch"], ["rewrite", str(CNN), "--to", "torch",
                                                                             "--diff"]])
def test_no_heavy_imports_without_verify_or_input_shape(args: list[str]) -> None:
    assert heavy_modules_after(args, str(REPO)) == []


@pytest.mark.slow
def test_transfer_from_keras_prints_no_tensorflow_log_lines(tmp_path: Path) -> None:
    """``crossport transfer model.keras`` imported Keras directly, so TensorFlow's C++ start-up lines ("All log
    messages before absl::InitializeLog()", "I0000 ... cudart_stub ...") reached the terminal; a fresh process
    shows that they no longer do (in-process runners cannot see file descriptor 2)."""
    import os
    import subprocess

    code = tmp_path / "cnn_torch.py"
    assert invoke("rewrite", str(CNN), "--to", "torch", "-o", str(code), "--input-shape", "1x32x32x3", "-q").exit_code == 0
    saved = tmp_path / "cnn.keras"
    build = (f"import sys, numpy as np; sys.path.insert(0, {str(KERAS)!r}); from functional_cnn import build_cnn; "
             f"m = build_cnn(); m(np.zeros((1, 32, 32, 3), 'float32')); m.save({str(saved)!r})")
    subprocess.run([sys.executable, "-c", build], check=True, capture_output=True)
    crossport = Path(sys.executable).with_name("crossport")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "ABSL"))}
    run = subprocess.run([str(crossport), "transfer", str(saved), "--into", f"{code}:build_cnn", "-o",
                          str(tmp_path / "cnn.pt"), "--input-shape", "2x32x32x3"], capture_output=True, text=True,
                         env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    noise = [ln for ln in run.stderr.splitlines() if "absl" in ln or ln.startswith(("I0000", "W0000", "E0000"))]
    assert not noise, noise
