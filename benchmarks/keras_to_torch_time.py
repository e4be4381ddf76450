"""Keras -> PyTorch conversion time per pipeline step and per 100 MB of weights (issue #19).

Run from the repository root:

    .venv/bin/python benchmarks/keras_to_torch_time.py                      # all models (~20 min on 2 CPUs)
    .venv/bin/python benchmarks/keras_to_torch_time.py --only ResNet50,VGG16 --out /tmp/k2t.json

Writes benchmarks/results/keras_to_torch_time.json (or ``--out``). Per model (``keras.applications``,
``weights=None``, ``classifier_activation=None``, input 224x224x3, saved as ``.keras`` by a child process into a
temporary directory that is deleted afterwards):

- ``crossport convert MODEL.keras -o MODEL.pt2 -q --report R.json`` in its own child process, verification on
  (crossport's default: Keras vs ONNX Runtime vs the converted module vs the reloaded ``.pt2``, two input sets),
  ``--latency-runs`` as given (crossport's default 5 unless ``--latency-runs`` is passed here);
- per-step seconds from the report's ``timings_s`` (``load``, ``export-onnx``, ``verify``, ``onnx2torch``,
  ``save``, ``latency``; a route that fell back adds its own steps), wall time, CPU seconds (user + system of the
  child and everything it reaped), peak RSS and the 1-minute load average before and after;
- weights: ``count_params() * 4`` bytes (float32) and the ``.keras`` file size;
- ``conversion_s`` = wall time minus the report's ``latency`` step (timing inference is a report feature, not
  conversion; ``--latency-runs 0`` skips it) and ``s_per_100mb`` = ``conversion_s`` per 100 MB of weights.

The issue's yardstick is crossport's ResNet-18 conversion: first, the zoo's seeded ResNet-18 ``.pt2`` (46.8 MB)
is converted to ``.keras`` the same way, and ``ratio_to_resnet18`` is each model's ``s_per_100mb`` divided by
that conversion's; the target is at most 2. ``ratio_to_reference`` divides by the first model's (ResNet50 by
default). Each conversion runs twice (``benchmarks/common.run_measured``): peak memory from the run the memory
probe watches, time and CPU seconds from the run after, without it. On a shared machine the load average moves
every number; CPU seconds move less.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import CROSSPORT, ROOT, VENV_BIN, child_env, machine, run_child, run_measured  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "keras_to_torch_time.json"
MODELS = ("ResNet50", "VGG16", "ResNet50V2", "ConvNeXtSmall", "InceptionResNetV2")
SAVE = """
import os, sys, json
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras
keras.utils.set_random_seed(0)
model = getattr(keras.applications, sys.argv[1])(weights=None, classifier_activation=None,
                                                 input_shape=(224, 224, 3))
model.save(sys.argv[2])
print(json.dumps({"params": int(model.count_params())}))
"""


def measure(name: str, work: Path, latency_runs: int | None, timeout_s: float) -> dict[str, Any]:
    source, out, report = work / f"{name}.keras", work / f"{name}.pt2", work / f"{name}.json"
    saved = run_child([str(VENV_BIN / "python"), "-c", SAVE, name, str(source)], work / f"{name}.save.log",
                      env=child_env(), timeout_s=timeout_s)
    if saved.exit_code != 0:
        return {"model": name, "error": f"saving failed: see {work / f'{name}.save.log'}"}
    params = json.loads((work / f"{name}.save.log").read_text().strip().splitlines()[-1])["params"]
    cmd = [str(CROSSPORT), "convert", str(source), "-o", str(out), "-q", "--report", str(report)]
    if latency_runs is not None:
        cmd += ["--latency-runs", str(latency_runs)]
    sidecar = out.with_name(out.name + ".crossport.json")
    run = run_measured(cmd, work / f"{name}.convert.log", (out, sidecar, report), env=child_env(),
                       timeout_s=timeout_s)
    cpu = run.cpu_s or 0.0
    rep = json.loads(report.read_text()) if report.exists() else {}
    timings = {k: round(v, 2) for k, v in (rep.get("timings_s") or {}).items()}
    weights_mb = params * 4 / 1e6
    conversion = run.wall_s - timings.get("latency", 0.0)
    return {
        "model": name, "params": params, "weights_mb": round(weights_mb, 1),
        "keras_file_mb": round(source.stat().st_size / 1e6, 1), "exit_code": run.exit_code,
        "passed": bool(rep.get("passed")), "route": rep.get("route_name"),
        "route_attempts": [{"route": a.get("route"), "outcome": a.get("outcome"), "seconds": a.get("seconds"),
                            "reason": (a.get("reason") or "")[:300]} for a in rep.get("route_attempts") or ()],
        "wall_s": round(run.wall_s, 1), "cpu_s": round(cpu, 1), "conversion_s": round(conversion, 1),
        "s_per_100mb": round(conversion / weights_mb * 100, 1), "steps_s": timings,
        "peak_rss_mib": round(run.peak_rss_mib), "loadavg_1m_before": run.loadavg_1m_before,
        "loadavg_1m_after": run.loadavg_1m_after, "command": " ".join(["crossport", *cmd[1:]]),
    }


def resnet18_reference(work: Path, latency_runs: int | None, timeout_s: float) -> dict[str, Any]:
    """The issue's yardstick: crossport's own ResNet-18 conversion, PyTorch -> ``.keras`` (the zoo's seeded
    ``.pt2``, dynamic batch, verification on), in seconds per 100 MB of weights, measured like the models here."""
    from benchmarks.zoo import run_stage

    made, _child, err = run_stage("make", "resnet18", work, timeout_s)
    if made is None:
        return {"model": "resnet18 (PyTorch -> .keras)", "error": f"making the .pt2 failed: {err}"}
    out, report = work / "resnet18.keras", work / "resnet18.json"
    cmd = [str(CROSSPORT), "convert", made["path"], "-o", str(out), "-q", "--report", str(report)]
    if latency_runs is not None:
        cmd += ["--latency-runs", str(latency_runs)]
    run = run_measured(cmd, work / "resnet18.convert.log", (out, out.with_name(out.name + ".crossport.json"), report),
                       env=child_env(), timeout_s=timeout_s)
    rep = json.loads(report.read_text()) if report.exists() else {}
    timings = {k: round(v, 2) for k, v in (rep.get("timings_s") or {}).items()}
    weights_mb = made["weights_bytes"] / 1e6
    conversion = run.wall_s - timings.get("latency", 0.0)
    return {"model": "resnet18 (PyTorch -> .keras)", "params": made["parameters"], "weights_mb": round(weights_mb, 1),
            "exit_code": run.exit_code, "passed": bool(rep.get("passed")), "wall_s": round(run.wall_s, 1),
            "conversion_s": round(conversion, 1), "s_per_100mb": round(conversion / weights_mb * 100, 1),
            "steps_s": timings, "loadavg_1m_before": run.loadavg_1m_before, "loadavg_1m_after": run.loadavg_1m_after,
            "command": "crossport convert resnet18.pt2 -o resnet18.keras -q --report r.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(MODELS), help="comma-separated keras.applications names; "
                                                                "the first is the reference")
    parser.add_argument("--latency-runs", type=int, default=None, help="passed to crossport (default: its own)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per child process")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    names = [n for n in args.only.split(",") if n]
    rows = []
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="k2t-bench-") as tmp:
        (Path(tmp) / "resnet18").mkdir()
        r18 = resnet18_reference(Path(tmp) / "resnet18", args.latency_runs, args.timeout)
        print(json.dumps(r18), flush=True)
        for name in names:
            work = Path(tmp) / name
            work.mkdir()
            rows.append(measure(name, work, args.latency_runs, args.timeout))
            shutil.rmtree(work)  # a .keras, an ONNX-sized temp dir and a .pt2 per model: disk is tight
            print(json.dumps(rows[-1]), flush=True)
    ref = next((r for r in rows if "s_per_100mb" in r), None)
    for r in rows:
        if ref is not None and "s_per_100mb" in r:
            r["ratio_to_reference"] = round(r["s_per_100mb"] / ref["s_per_100mb"], 2)
        if r18.get("s_per_100mb") and "s_per_100mb" in r:
            r["ratio_to_resnet18"] = round(r["s_per_100mb"] / r18["s_per_100mb"], 2)
    result = {"command": " ".join(sys.argv), "reference": ref["model"] if ref else None, "resnet18": r18,
              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "machine": machine(),
              "models": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
