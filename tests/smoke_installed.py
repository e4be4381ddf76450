"""Smoke subset against an *installed* crossport (the wheel), run by .ci/wheel-smoke outside the repository.

Not collected by the main suite (no ``test_`` prefix here; the script copies it under a test name). Every check
runs the console script as a user would and compares the result outside crossport, with plain torch / Keras.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}


def crossport(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("crossport")
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=900)
    assert proc.returncode == 0, f"crossport {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=ENV,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_installed_from_the_wheel_not_a_checkout() -> None:
    import converter

    assert "site-packages" in Path(converter.__file__).parts, converter.__file__
    assert crossport("--version").stdout.startswith("crossport, version")
    assert "convert" in crossport("--help").stdout


@pytest.fixture(scope="module")
def pt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("torch")
    run_python(f"""
        import torch
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5)).eval()
        batch = torch.export.Dim("batch", min=1, max=64)
        ep = torch.export.export(model, (torch.randn(2, 3, 16, 16),), dynamic_shapes=({{0: batch}},))
        torch.export.save(ep, r"{folder / 'net.pt2'}")
    """)
    return folder / "net.pt2"


def test_pytorch_to_keras_matches_outside_crossport(pt2: Path) -> None:
    out = pt2.with_suffix(".keras")
    crossport("convert", str(pt2), "-o", str(out), "-q")
    err = float(run_python(f"""
        import torch._dynamo  # before TensorFlow: tensorflow/tensorflow#124205 (README, Install)
        import numpy as np, torch, keras
        x = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
        ref = torch.export.load(r"{pt2}").module()(torch.from_numpy(x)).detach().numpy()
        got = keras.models.load_model(r"{out}")(np.transpose(x, (0, 2, 3, 1)))
        print(float(np.max(np.abs(np.asarray(got) - ref))))
    """).strip().splitlines()[-1])
    assert err < 1e-4


def test_verify_two_files(pt2: Path) -> None:
    out = pt2.with_name("net_v.keras")
    crossport("convert", str(pt2), "-o", str(out), "-q")
    assert "PASS" in crossport("verify", str(pt2), str(out)).stdout


def test_keras_to_pytorch_matches_outside_crossport(tmp_path: Path) -> None:
    src = tmp_path / "k.keras"
    run_python(f"""
        import keras
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((12, 12, 3)), keras.layers.Conv2D(6, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4)])
        m.save(r"{src}")
    """)
    out = tmp_path / "k.pt2"
    crossport("convert", str(src), "-o", str(out), "-q")
    err = float(run_python(f"""
        import torch._dynamo  # before TensorFlow: tensorflow/tensorflow#124205 (README, Install)
        import numpy as np, torch, keras
        x = np.random.default_rng(2).standard_normal((2, 12, 12, 3)).astype(np.float32)
        ref = np.asarray(keras.models.load_model(r"{src}")(x))
        got = torch.export.load(r"{out}").module()(torch.from_numpy(x)).detach().numpy()
        print(float(np.max(np.abs(got - ref))))
    """).strip().splitlines()[-1])
    assert err < 1e-4


def test_rewrite_with_verify(tmp_path: Path) -> None:
    src = tmp_path / "net.py"
    src.write_text(textwrap.dedent("""
        import torch.nn as nn
        import torch.nn.functional as F


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3, padding=1)
                self.fc = nn.Linear(8 * 8 * 8, 10)

            def forward(self, x):
                x = F.max_pool2d(F.relu(self.conv(x)), 2)
                x = x.flatten(1)
                return self.fc(x)
    """))
    out = tmp_path / "net_keras.py"
    proc = crossport("rewrite", str(src), "--to", "keras", "-o", str(out), "--verify", "--input-shape", "2x3x16x16")
    assert out.exists() and "keras" in out.read_text()
    assert "verify passed" in proc.stdout


def test_pytest_plugin_is_registered(tmp_path: Path, pt2: Path) -> None:
    out = pt2.with_name("net_p.keras")
    crossport("convert", str(pt2), "-o", str(out), "-q")
    (tmp_path / "test_user.py").write_text(textwrap.dedent(f"""
        import pytest

        @pytest.mark.parity(atol=1e-4, rtol=1e-4, reason="float32")
        def test_converted(parity):
            parity.check(r"{pt2}", r"{out}")
    """))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_user.py"],
                          cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
