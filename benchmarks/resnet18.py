"""ResNet-18: raw onnx2tf (defaults) vs crossport end to end, in one run. Writes benchmarks/results/resnet18.json.

Run from the repository root:  .venv/bin/python benchmarks/resnet18.py   (about 6 minutes on 2 CPUs)

Measured, each in its own child process (so peak RSS is per step and imports are paid where a user pays them):

1. raw upstream: ``torch.onnx.export(dynamo=True)`` of torchvision ``resnet18(weights=None)`` (seed 0, eval, batch 1)
   then ``onnx2tf.convert(input_onnx_file_path=..., output_folder_path=...)`` with default settings (SavedModel +
   float32 + float16 TFLite), in a private directory holding onnx2tf's calibration file so it runs offline. The
   SavedModel / TFLite writes inside ``convert`` are timed by wrapping ``tf.saved_model.save`` and the TFLite
   converters' ``convert`` (outermost calls only).
2. crossport's onnx2tf adapter (``converter.adapters.onnx2tf_adapter``) on the same ONNX file, same three artifacts,
   with the outputs compared against onnxruntime.
3. ``crossport convert model.pt2 -o out.keras``, ``--to saved_model`` and ``--to saved_model --route onnx2tf``
   (crossport's pipeline through the adapter of step 2): wall time of the subprocess, process start and
   verification included (median of ``--repeat`` runs, default 3); the report JSON gives verification per hop.
4. ``crossport --help`` wall time (median of 5) and whether the CLI imports torch / TensorFlow for ``--help``.

Peak RSS of each child comes from ``os.wait4`` (the child's own ``ru_maxrss``, including children it reaped).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, VENV_BIN, child_env, machine, measure_help, run_child  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "resnet18.json"
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # what onnx2tf looks for in its cwd
SEED = 0


# ------------------------------------------------------------------------------------------------ child stages


def _write_calibration(directory: Path) -> None:
    import numpy as np

    data = np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)
    np.save(directory / CALIBRATION_FILE, data)


def stage_pt2(work: Path) -> dict[str, Any]:
    """Save the seeded model as an ExportedProgram with a dynamic batch (traced with batch 2)."""
    import torch
    import torchvision

    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None).eval()
    t0 = time.perf_counter()
    program = torch.export.export(model, (torch.randn(2, 3, 224, 224),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    torch.export.save(program, str(work / "resnet18.pt2"))
    return {"torch_export_and_save_s": time.perf_counter() - t0}


def stage_raw(work: Path) -> dict[str, Any]:
    """The upstream path a user would write, onnx2tf with default settings."""
    t_start = time.perf_counter()
    import torch
    import torchvision

    t_import_torch = time.perf_counter() - t_start
    torch.manual_seed(SEED)
    model = torchvision.models.resnet18(weights=None).eval()
    export_dir = work / "onnx"
    export_dir.mkdir()
    onnx_path = export_dir / "resnet18.onnx"
    t0 = time.perf_counter()
    torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), str(onnx_path), dynamo=True)
    t_export = time.perf_counter() - t0

    # onnx2tf rewrites its input in place (onnxsim, op naming): give it a copy, keep the export for stage_adapter.
    run_dir = work / "raw_run"
    run_dir.mkdir()
    for f in export_dir.iterdir():
        shutil.copy(f, run_dir / f.name)
    _write_calibration(run_dir)  # offline: onnx2tf would download this file into nothing otherwise
    os.chdir(run_dir)

    t0 = time.perf_counter()
    import onnx2tf
    import tensorflow as tf
    from tensorflow.lite.python import lite

    t_import_onnx2tf = time.perf_counter() - t0

    phases: list[dict[str, float | str]] = []
    depth = [0]
    clock: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0] += 1
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                depth[0] -= 1
                phases.append({"phase": name, "start_s": t - clock["start"], "seconds": time.perf_counter() - t})
        return wrapper

    # Record (and refuse) any download, and count reads of the calibration file; neither changes what onnx2tf does
    # when the file is present.
    import onnx2tf.onnx2tf as upstream
    import requests

    network: list[str] = []
    calibration_loads = [0]

    def refuse(url: str, *args: Any, **kwargs: Any) -> Any:
        network.append(str(url))
        raise requests.exceptions.ConnectionError(f"benchmark runs offline: {url}")

    requests.get = refuse
    original_download = upstream.download_test_image_data

    def counted() -> Any:
        calibration_loads[0] += 1
        return original_download()

    upstream.download_test_image_data = counted

    tf.saved_model.save = timed("saved_model", tf.saved_model.save)
    for cls in (lite.TFLiteKerasModelConverterV2, lite.TFLiteFrozenGraphConverterV2, lite.TFLiteSavedModelConverterV2):
        cls.convert = timed("tflite", cls.convert)

    out_dir = run_dir / "saved_model"
    clock["start"] = time.perf_counter()
    onnx2tf.convert(input_onnx_file_path=str(run_dir / "resnet18.onnx"), output_folder_path=str(out_dir))
    t_convert = time.perf_counter() - clock["start"]

    tflite = [p for p in phases if p["phase"] == "tflite"]
    saved = [p for p in phases if p["phase"] == "saved_model"]
    first_write = min((float(p["start_s"]) for p in phases), default=t_convert)
    artifacts = sorted(
        str(p.relative_to(out_dir)) for p in out_dir.iterdir()
    )
    return {
        "input_shape": [1, 3, 224, 224],
        "import_torch_s": t_import_torch,
        "torch_onnx_export_s": t_export,
        "import_onnx2tf_s": t_import_onnx2tf,
        "onnx2tf_convert_s": t_convert,
        "onnx2tf_breakdown_s": {
            "before_first_write": first_write,  # onnxsim x3, op naming, graph build, strict-mode checks
            "saved_model_write": sum(float(p["seconds"]) for p in saved),
            "tflite_float32": float(tflite[0]["seconds"]) if tflite else None,
            "tflite_float16": float(tflite[1]["seconds"]) if len(tflite) > 1 else None,
        },
        "phases": phases,
        "export_plus_convert_s": t_export + t_convert,
        "process_total_s": time.perf_counter() - t_start,
        "artifacts": artifacts,
        "calibration_file_loads": calibration_loads[0],
        "network_requests": network,
    }


def stage_adapter(work: Path) -> dict[str, Any]:
    """The same ONNX file through crossport's onnx2tf adapter (only requested artifacts, no tf_keras metadata)."""
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from converter.adapters.onnx2tf_adapter import convert_with_onnx2tf

    out = work / "adapter"
    out.mkdir()
    t0 = time.perf_counter()
    result = convert_with_onnx2tf(work / "onnx" / "resnet18.onnx", out, saved_model=True, tflite_fp32=True,
                                  tflite_fp16=True)
    wall = time.perf_counter() - t0

    import onnxruntime as ort
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    x = np.random.default_rng(SEED).standard_normal((1, 3, 224, 224)).astype(np.float32)
    session = ort.InferenceSession(str(work / "onnx" / "resnet18.onnx"), providers=["CPUExecutionProvider"])
    expected = session.run(None, {session.get_inputs()[0].name: x})[0]
    x_nhwc = np.transpose(x, (0, 2, 3, 1))
    (name_in,), (name_out,) = result.input_names, result.output_names
    sm = tf.saved_model.load(str(result.saved_model)).signatures["serving_default"]
    got_sm = sm(**{name_in: tf.constant(x_nhwc)})[name_out].numpy()
    errors = {"saved_model": float(np.abs(got_sm - expected).max())}
    for key, path in (("tflite_float32", result.tflite_fp32), ("tflite_float16", result.tflite_fp16)):
        runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
        errors[key] = float(np.abs(runner(**{name_in: x_nhwc})[name_out] - expected).max())
    s = result.seconds
    return {
        "wall_s": wall,
        "seconds": {"setup_imports_and_copy": s.setup, "onnx2tf_graph": s.graph, "saved_model_write": s.saved_model,
                    "tflite_float32": s.tflite_fp32, "tflite_float16": s.tflite_fp16, "total": s.total},
        "max_abs_error_vs_onnxruntime": errors,
    }


STAGES = {"pt2": stage_pt2, "raw": stage_raw, "adapter": stage_adapter}


# ------------------------------------------------------------------------------------------------------ parent


def run_stage(name: str, work: Path, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one stage in a child process (the zoo benchmark calls this for its raw-upstream baseline)."""
    out = work / f"stage_{name}.json"
    child = run_child([sys.executable, __file__, "--stage", name, str(work), str(out)], work / f"stage_{name}.log",
                      child_env(), timeout_s=timeout_s).to_dict()
    if child["timed_out"]:
        raise SystemExit(f"stage {name} timed out after {timeout_s:.0f} s")
    if child["exit_code"] != 0:
        tail = (work / f"stage_{name}.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"stage {name} failed (exit {child['exit_code']}):\n{tail}")
    return {**json.loads(out.read_text()), "child": child}


def run_crossport(pt2: Path, target: str, suffix: str, work: Path, repeat: int,
                  extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """``crossport convert`` ``repeat`` times (fresh output each time); wall time = median, peak RSS = max."""
    runs = []
    label = "_".join([target, *(a.lstrip("-") for a in extra)])
    for i in range(repeat):
        output, report = work / f"out_{label}_{i}{suffix}", work / f"report_{label}_{i}.json"
        cmd = [str(VENV_BIN / "crossport"), "convert", str(pt2), "-o", str(output), "-q", "--report", str(report)]
        if target != "keras":  # .keras is picked from the suffix
            cmd += ["--to", target]
        cmd += extra
        child = run_child(cmd, work / f"crossport_{label}_{i}.log").to_dict()
        data = json.loads(report.read_text()) if report.is_file() else {}
        hops = [
            {"hop": h["hop"], "passed": h["passed"],
             "max_abs_error": max((o["max_abs_error"] for o in h.get("outputs", [])), default=None)}
            for h in data.get("hops", [])
        ]
        runs.append({**child, "verified": data.get("verified"), "passed": data.get("passed"),
                     "route": data.get("route"), "hops": hops, "timings_s": data.get("timings_s")})
    last = runs[-1]
    return {
        "command": "crossport convert resnet18.pt2 -o out{} -q --report r.json{}{}".format(
            suffix, "" if target == "keras" else f" --to {target}", "".join(f" {a}" for a in extra)),
        "repeat": repeat,
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "wall_s_runs": [r["wall_s"] for r in runs],
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "exit_codes": [r["exit_code"] for r in runs],
        "verified": all(r["verified"] for r in runs), "passed": all(r["passed"] for r in runs),
        "route": last["route"], "hops": last["hops"],
        "loadavg_1m_before": min(r["loadavg_1m_before"] for r in runs),
        "loadavg_1m_after": max(r["loadavg_1m_after"] for r in runs),
        "runs": runs,
    }


def table(r: dict[str, Any]) -> str:
    raw, adapter = r["raw_onnx2tf"], r["crossport_onnx2tf_adapter"]
    a = adapter["seconds"]
    keras, sm = r["crossport_convert_keras"], r["crossport_convert_saved_model"]
    o2t = r["crossport_convert_saved_model_onnx2tf_route"]
    b = raw["onnx2tf_breakdown_s"]

    def f(x: float | None) -> str:
        return "—" if x is None else f"{x:.1f}"

    def worst(run: dict[str, Any]) -> str:
        errors = [h["max_abs_error"] for h in run["hops"] if h["max_abs_error"] is not None]
        return f"{max(errors):.1e}" if errors else "—"

    rows = [
        "| step | wall time (s) | peak RSS (MiB) | notes |",
        "|---|---:|---:|---|",
        f"| raw: torch.onnx.export (dynamo) | {f(raw['torch_onnx_export_s'])} | | batch 1 |",
        f"| raw: onnx2tf.convert, defaults | {f(raw['onnx2tf_convert_s'])} | | SavedModel + fp32 + fp16 TFLite |",
        f"| &nbsp;&nbsp;before first write (onnxsim, graph, strict checks) | {f(b['before_first_write'])} | | |",
        f"| &nbsp;&nbsp;SavedModel write | {f(b['saved_model_write'])} | | tf_keras model |",
        f"| &nbsp;&nbsp;TFLite float32 | {f(b['tflite_float32'])} | | from_keras_model |",
        f"| &nbsp;&nbsp;TFLite float16 | {f(b['tflite_float16'])} | | from_keras_model |",
        f"| raw: export + convert | {f(raw['export_plus_convert_s'])} | | no verification |",
        f"| raw: whole process (imports included) | {f(raw['child']['wall_s'])} "
        f"| {raw['child']['peak_rss_mib']:.0f} | |",
        f"| adapter: same ONNX, same 3 artifacts | {f(a['total'])} | {adapter['child']['peak_rss_mib']:.0f} "
        f"| imports+copy {f(a['setup_imports_and_copy'])}, graph {f(a['onnx2tf_graph'])}, "
        f"SavedModel {f(a['saved_model_write'])}, fp32 {f(a['tflite_float32'])}, "
        f"fp16 {f(a['tflite_float16'])}; max abs err vs ORT "
        f"{max(adapter['max_abs_error_vs_onnxruntime'][k] for k in ('saved_model', 'tflite_float32')):.1e} (fp32) |",
        f"| crossport convert → .keras (median of {keras['repeat']}) | {f(keras['wall_s'])} "
        f"| {keras['peak_rss_mib']:.0f} "
        f"| process start + verification; passed={keras['passed']}, worst hop max abs err {worst(keras)} |",
        f"| crossport convert → SavedModel (median of {sm['repeat']}) | {f(sm['wall_s'])} "
        f"| {sm['peak_rss_mib']:.0f} "
        f"| process start + verification; passed={sm['passed']}, worst hop max abs err {worst(sm)} |",
        f"| crossport convert → SavedModel --route onnx2tf (median of {o2t['repeat']}) | {f(o2t['wall_s'])} "
        f"| {o2t['peak_rss_mib']:.0f} | process start + verification; passed={o2t['passed']}, "
        f"worst hop max abs err {worst(o2t)} |",
        f"| crossport --help (median of 5) | {r['crossport_help']['median_s']:.2f} | | imports torch: "
        f"{r['crossport_help']['imports']['--help']['torch']}, tensorflow: "
        f"{r['crossport_help']['imports']['--help']['tensorflow']} |",
    ]
    s = r["speedup"]
    rows.append("")
    rows.append(f"Speed-up (raw export + onnx2tf.convert ÷ crossport wall time): .keras ×{s['keras_vs_raw']:.1f}, "
                f"SavedModel ×{s['saved_model_vs_raw']:.1f}, SavedModel via onnx2tf route "
                f"×{s['saved_model_onnx2tf_route_vs_raw']:.1f}; "
                f"adapter vs raw onnx2tf.convert ×{s['adapter_vs_raw_convert']:.1f}.")
    loads = [v for k in ("raw_onnx2tf", "crossport_onnx2tf_adapter") for v in
             (r[k]["child"]["loadavg_1m_before"], r[k]["child"]["loadavg_1m_after"])]
    loads += [r[k][x] for k in ("crossport_convert_keras", "crossport_convert_saved_model",
                                "crossport_convert_saved_model_onnx2tf_route")
              for x in ("loadavg_1m_before", "loadavg_1m_after")]
    rows.append(f"Machine: {r['machine']['nproc']} CPUs ({r['machine']['cpu']}), {r['machine']['memory_gib']} GiB; "
                f"1-minute load average during the run {min(loads):.1f}–{max(loads):.1f}.")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", nargs=3, metavar=("NAME", "WORKDIR", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--repeat", type=int, default=3, help="crossport runs per target (median reported)")
    args = parser.parse_args()
    if args.stage:
        name, work, out = args.stage
        Path(out).write_text(json.dumps(STAGES[name](Path(work)), indent=2))
        return

    work = Path(tempfile.mkdtemp(prefix="crossport-bench-resnet18-"))
    print(f"work dir: {work}", file=sys.stderr)
    results: dict[str, Any] = {"benchmark": "resnet18", "model": "torchvision resnet18(weights=None), seed 0, eval",
                               "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    try:
        print("raw onnx2tf (defaults) ...", file=sys.stderr)
        results["raw_onnx2tf"] = run_stage("raw", work)
        print("onnx2tf adapter ...", file=sys.stderr)
        results["crossport_onnx2tf_adapter"] = run_stage("adapter", work)
        print("saving .pt2 ...", file=sys.stderr)
        results["pt2"] = run_stage("pt2", work)
        pt2 = work / "resnet18.pt2"
        print(f"crossport convert -> .keras (x{args.repeat}) ...", file=sys.stderr)
        results["crossport_convert_keras"] = run_crossport(pt2, "keras", ".keras", work, args.repeat)
        print(f"crossport convert -> saved_model (x{args.repeat}) ...", file=sys.stderr)
        results["crossport_convert_saved_model"] = run_crossport(pt2, "saved_model", "_saved_model", work, args.repeat)
        print(f"crossport convert -> saved_model --route onnx2tf (x{args.repeat}) ...", file=sys.stderr)
        results["crossport_convert_saved_model_onnx2tf_route"] = run_crossport(
            pt2, "saved_model", "_saved_model", work, args.repeat, ("--route", "onnx2tf"))
        print("crossport --help ...", file=sys.stderr)
        results["crossport_help"] = measure_help()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    raw_total = results["raw_onnx2tf"]["export_plus_convert_s"]
    results["speedup"] = {
        "keras_vs_raw": raw_total / results["crossport_convert_keras"]["wall_s"],
        "saved_model_vs_raw": raw_total / results["crossport_convert_saved_model"]["wall_s"],
        "saved_model_onnx2tf_route_vs_raw": raw_total
        / results["crossport_convert_saved_model_onnx2tf_route"]["wall_s"],
        "adapter_vs_raw_convert": results["raw_onnx2tf"]["onnx2tf_convert_s"]
        / results["crossport_onnx2tf_adapter"]["seconds"]["total"],
        "definition": "raw torch.onnx.export + onnx2tf.convert seconds (in-process, no verification, imports "
                      "excluded) divided by crossport's subprocess wall time (process start, imports and "
                      "verification included); adapter ratio compares onnx2tf.convert alone with the adapter call",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
