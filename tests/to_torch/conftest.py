"""Seeded Keras fixtures saved once per session, and a plain-torch subprocess check."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHECK = Path(__file__).with_name("_plain_torch_check.py")


@pytest.fixture(scope="session")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fixtures import keras_models

    d = tmp_path_factory.mktemp("keras_sources")
    return {name: keras_models.save(name, d / f"{name}.keras") for name in keras_models.BUILDERS}


def keras_reference(path: Path, batch: int, seed: int = 5) -> tuple[list[np.ndarray], list[np.ndarray], int]:
    """Sample inputs for the Keras model at ``path``, its outputs, and its trainable element count."""
    from converter.adapters import keras_load, tf_onnx

    model = keras_load.load_keras(str(path), trust_code=False)
    sigs = tf_onnx.keras_signature(model, {})
    rng = np.random.default_rng(seed)
    feeds = []
    for s in sigs:
        shape = (batch, *s.shape[1:])
        feeds.append(rng.integers(0, 10, shape).astype(s.dtype) if "int" in s.dtype
                     else rng.standard_normal(shape).astype(np.float32))
    out = model(feeds[0] if len(feeds) == 1 else feeds, training=False)
    outs = [np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else (out,))]
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return feeds, outs, trainable


def plain_torch_check(artifact: Path, kind: str, feeds: list[np.ndarray], outs: list[np.ndarray],
                      trainable: int, tmp: Path) -> str:
    """Load ``artifact`` in a fresh interpreter that never imports crossport; train one step there."""
    data = tmp / "data.npz"
    np.savez(data, n_in=len(feeds), n_out=len(outs), **{f"in{i}": f for i, f in enumerate(feeds)},
             **{f"out{i}": o for i, o in enumerate(outs)})
    proc = subprocess.run([sys.executable, "-I", str(CHECK), str(artifact), kind, str(data), str(trainable)],
                          capture_output=True, text=True, cwd=tmp, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc.stdout
