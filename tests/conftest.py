"""Shared fixtures: seeded fixture models saved in every PyTorch source format, once per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def saved_sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """small_cnn in every source format, plus pt2 files of the other fixture models."""
    from fixtures import save

    d = tmp_path_factory.mktemp("sources")
    out = {
        "pt2": save.save_pt2("small_cnn", d / "small_cnn.pt2"),
        "torchscript": save.save_torchscript("small_cnn", d / "small_cnn_ts.pt"),
        "state_dict": save.save_state_dict("small_cnn", d / "small_cnn_sd.pt"),
        "pickled": save.save_pickled_module("small_cnn", d / "small_cnn_pickled.pt"),
    }
    for name in ("mlp", "two_in_two_out", "transformer_block"):
        out[f"{name}.pt2"] = save.save_pt2(name, d / f"{name}.pt2")
    return out
