"""Two conversions at once in one working directory do not see each other's files.

onnx2tf works in the current directory (it reads a calibration file from it and writes its SavedModel there);
``converter.adapters.onnx2tf_adapter`` runs it in a private directory inside the conversion's own work dir. Two real
processes started together in the same cwd, both through onnx2tf, must both verify, produce outputs that belong to
their own source (different class counts make a mix-up visible in the shapes), and leave nothing else behind.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CROSSPORT = [sys.executable, "-c", "from converter.cli import main; main()"]
JOBS = {
    # output name -> (model kwargs, input shape, number of classes)
    "a.tflite": ('{"num_classes": 10, "in_channels": 3}', "2x3x16x16", 10),
    "b_saved_model": ('{"num_classes": 7, "in_channels": 1}', "2x1x16x16", 7),
}

needs_onnx2tf = pytest.mark.skipif(importlib.util.find_spec("onnx2tf") is None,
                                   reason="onnx2tf is the optional extra crossport[onnx2tf]")


@pytest.mark.slow
@needs_onnx2tf
def test_two_onnx2tf_conversions_in_one_cwd(tmp_path: Path) -> None:
    cwd = tmp_path / "shared"
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = {}
    for out, (kwargs, shape, _) in JOBS.items():
        procs[out] = subprocess.Popen(
            [*CROSSPORT, "convert", "fixtures.models:SmallCNN", "--model-kwargs", kwargs, "--input-shape", shape,
             "--route", "onnx2tf", "-o", out, "-q"],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started = time.time()
    results = {out: p.communicate(timeout=600) for out, p in procs.items()}
    for out, p in procs.items():
        assert p.returncode == 0, f"{out} (after {time.time() - started:.0f}s):\n{results[out][1][-2000:]}"

    expected = set(JOBS) | {f"{out}.crossport.json" for out in JOBS}
    assert {p.name for p in cwd.iterdir()} == expected, "stray files in the shared working directory"

    for out, (_, shape, classes) in JOBS.items():
        manifest = json.loads((cwd / f"{out}.crossport.json").read_text())
        assert manifest["passed"] and "onnx2tf" in manifest["route"], manifest["route"]
        assert manifest["outputs"][0]["shape"][-1] == classes, (out, manifest["outputs"])
        assert manifest["inputs"][0]["shape"][1:] == [int(d) for d in shape.split("x")[1:]], manifest["inputs"]
    assert _tflite_classes(cwd / "a.tflite") == 10
    assert _saved_model_classes(cwd / "b_saved_model") == 7


def _tflite_classes(path: Path) -> int:
    from converter.frameworks import tensorflow

    interp = tensorflow().lite.Interpreter(model_path=str(path))
    return int(interp.get_output_details()[0]["shape"][-1])


def _saved_model_classes(path: Path) -> int:
    from converter.frameworks import tensorflow

    fn = tensorflow().saved_model.load(str(path)).signatures["serving_default"]
    (spec,) = fn.structured_outputs.values()
    return int(spec.shape[-1])
