"""Model-zoo benchmark: public architectures converted both ways through ``crossport convert``, as a user runs it.

Run from the repository root (``make bench`` runs the full zoo):

    .venv/bin/python benchmarks/zoo.py                      # full zoo, writes benchmarks/results/zoo.json
    .venv/bin/python benchmarks/zoo.py --quick              # .keras / .pt2 targets only, 5 latency runs, no raw path
    .venv/bin/python benchmarks/zoo.py --only squeezenet1_1,keras_lstm
    .venv/bin/python benchmarks/report.py                   # markdown table from the results file

Per model, each in its own child process (peak RSS per step from ``os.wait4``; per-model timeout):

1. *make*: build the architecture with random weights (``benchmarks/zoo_models.py`` re-draws BN statistics,
   biases and LayerScale and scales the head so outputs are of order one) and save it as the user would hand it
   to crossport: an ExportedProgram ``.pt2`` (dynamic batch) or a Keras 3 ``.keras`` file.
2. *convert*: ``crossport convert SRC -o OUT -q --report R`` per target, verification on (crossport's default),
   twice (``benchmarks/common.run_measured``): the peak memory from a run watched by the memory probe, the wall
   time, report and file from a second run without it (the probe slows a large conversion by ~15 %).
   Converted / verified / errors / route / internal timings come from crossport's own JSON report; a failure's
   reason is crossport's one-line error and exit code. A failure with a dynamic batch is retried once with
   ``--static-batch`` (ConvNeXt's batch-dependent Range needs it) and the result says so.
3. *measure*: source and converted models on the same batch-1 input, single-threaded (torch 1 thread, TensorFlow
   intra/inter-op 1, TFLite 1 thread, OMP_NUM_THREADS=1), warm (3 untimed calls), median of N timed calls;
   plus the number of layout transposes left inside each converted graph.

Then, in the same run: the raw upstream ResNet-18 path (``benchmarks/resnet18.py``'s ``raw`` stage:
torch.onnx.export + onnx2tf defaults), crossport start-up times with an import check, and two tiny models whose
conversion peak RSS is taken as the frameworks' own footprint (so memory per model can be stated as a multiple
of its weights on top of that footprint).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import (CROSSPORT, ROOT, ChildRun, child_env, guarded, interruptible,  # noqa: E402
                               machine, measure_help, measure_rewrite, run_child,
                               run_measured)
from benchmarks.zoo_models import ALL_MODELS, FOOTPRINT_MODELS, ZOO, ZooModel  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "zoo.json"
EXPECTED = ROOT / "benchmarks" / "expected.json"
DEFAULT_TIMEOUT_S = 900.0
EXIT_REASONS = {1: "verification failed", 2: "usage error", 3: "bad path", 4: "unreadable model",
                5: "unsupported op", 6: "output exists/unwritable", 7: "input shape", 8: "unsafe load refused",
                9: "model class", 70: "internal error", 130: "interrupted"}
# target -> (output name suffix, extra convert flags)
TARGETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "keras": (".keras", ()),
    "saved_model": ("_saved_model", ("--to", "saved_model")),
    "tflite": (".tflite", ()),
    # full integer, float I/O, seeded calibration; --force keeps a file that misses a threshold, so its size and
    # latency are still measured (the table says it did not verify)
    "tflite_int8": ("_int8.tflite", ("--quantize", "int8", "--force")),
    "pt2": (".pt2", ()),
}


# PyTorch -> TF targets measured on the tiny model. Each route imports its own runtime beside the conversion
# (LiteRT's interpreter and the flatbuffer writer for .tflite: +9 MiB on the tiny model, 2026-12-06), so a row is
# compared with the footprint of its own target; int8 rows with the float .tflite route's.
FOOTPRINT_TARGETS = ("keras", "saved_model", "tflite")
FOOTPRINT_OF = {"tflite_int8": "tflite"}


@dataclass(frozen=True)
class ZooConfig:
    """What one benchmark run does; the CLI flags map onto it one to one."""

    only: tuple[str, ...] = ()
    quick: bool = False
    timeout_s: float = DEFAULT_TIMEOUT_S
    latency_runs: int = 20
    measure: bool = True  # latency + transposes (off in the CI smoke test: it only asserts conversion status)
    raw_baseline: bool = True  # raw upstream ResNet-18 (only when resnet18 is selected and not --quick)
    startup: bool = True
    footprint: bool = True  # tiny models for the frameworks' own memory footprint (not with --quick)
    keep: bool = False
    int8: bool = True  # also an int8 .tflite for the image models (PyTorch -> TF)
    only_targets: tuple[str, ...] = ()  # restrict to these targets (e.g. tflite,tflite_int8)
    partial_output: Path | None = None  # rewritten after every model, so an interrupted run still leaves numbers
    log: Callable[[str], None] = field(default=lambda msg: print(msg, file=sys.stderr, flush=True), repr=False)

    def targets(self, model: ZooModel) -> tuple[str, ...]:
        if model.footprint_only:  # each route's own baseline; the same whatever --targets selects for the others
            if model.direction == "keras2torch":
                return ("pt2",)
            if not self.only_targets:
                return FOOTPRINT_TARGETS
            wanted = {FOOTPRINT_OF.get(t, t) for t in self.only_targets}
            return tuple(t for t in FOOTPRINT_TARGETS if t in wanted) or ("keras",)  # keeps the report's line
        if model.direction == "keras2torch":
            targets: tuple[str, ...] = ("pt2",)
        elif self.quick:
            targets = ("keras",)
        else:
            image = len(model.input_shape) == 3
            targets = ("keras", "saved_model", "tflite") + (("tflite_int8",) if self.int8 and image else ())
        return tuple(t for t in targets if t in self.only_targets) if self.only_targets else targets

    def models(self) -> tuple[ZooModel, ...]:
        if not self.only:
            return ZOO
        unknown = [n for n in self.only if n not in ALL_MODELS]
        if unknown:
            raise SystemExit(f"unknown model(s) {unknown}; known: {', '.join(ALL_MODELS)}")
        return tuple(ALL_MODELS[n] for n in self.only)


@dataclass(frozen=True)
class Conversion:
    """One ``crossport convert`` of one model to one target (after a ``--static-batch`` retry, if any)."""

    target: str
    command: str
    converted: bool  # crossport produced a model (verification may still have failed)
    verified: bool  # verification ran and passed: the output was written
    reason: str  # why not, in crossport's words ("" when verified)
    exit_code: int | None
    static_batch: bool
    dynamic_batch_failure: str  # the first attempt's reason when --static-batch was needed
    wall_s: float
    peak_rss_mib: float
    max_abs_error: float | None  # worst over outputs and input sets, end-to-end hop (source vs target)
    output_scale: float | None  # max |reference output| on the same hop
    rel_error: float | None  # max_abs_error / output_scale
    max_elementwise_rel_error: float | None  # crossport's max |a-b|/|b| (large near zeros; for completeness)
    failed_hop: str | None
    route: tuple[str, ...]
    crossport_timings_s: dict[str, float]
    load: tuple[float, float]
    artifact: str | None = None
    input_layouts: tuple[tuple[str, str], ...] = ()  # per input: (source layout, target layout)
    artifact_bytes: int | None = None  # size of the written file (directory: summed)
    # quantized targets: crossport's metrics on the end-to-end hop (cosine, SNR, top-1/top-5 agreement, decided_by)
    quantization: dict[str, Any] | None = None
    probe_wall_s: float | None = None  # the wall time of the run that measured the peak memory
    # footprint models: the peak of each of FOOTPRINT_RUNS conversions; peak_rss_mib is their median
    footprint_peaks_mib: tuple[float, ...] = ()


@dataclass(frozen=True)
class Measurement:
    """Latency of source vs converted model, and transposes left in the converted graph."""

    target: str
    latency_ms: float | None
    source_latency_ms: float | None
    latency_ratio: float | None
    transposes: int | None
    transpose_detail: dict[str, int]
    output_max_abs_diff: float | None  # source vs converted on the latency input (a cross-check)
    source_cpu_per_wall: float | None = None  # process CPU s / wall s while timing: ~1.0 = one thread
    cpu_per_wall: float | None = None
    error: str = ""


@dataclass(frozen=True)
class ModelResult:
    name: str
    direction: str
    origin: str
    input_shape: tuple[int, ...]
    input_dtype: str
    source: dict[str, Any]  # parameters, weights_bytes, output std before/after calibration, dynamic_batch
    make: dict[str, Any]
    conversions: tuple[Conversion, ...]
    measurements: tuple[Measurement, ...]
    measure_child: dict[str, Any] | None
    wall_s: float
    error: str = ""


# --------------------------------------------------------------------------------------------- conversions


def _one_line_reason(log: Path, exit_code: int | None, timed_out: bool) -> str:
    """crossport's one-line error (``crossport: kind: message``), else the exit code's meaning."""
    if timed_out:
        return "timeout"
    lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("crossport: ") and not ln.startswith("crossport: wrote")]
    prefix = f"exit {exit_code} ({EXIT_REASONS.get(exit_code or 0, 'unknown')})"
    return f"{prefix}: {errors[-1][len('crossport: '):][:400]}" if errors else prefix


def _worst_end_to_end(report: dict[str, Any]) -> tuple[float | None, float | None, float | None, str | None]:
    """Max abs error, output scale and max elementwise rel error of the end-to-end hop (else the worst hop)."""
    hops = report.get("hops", [])
    e2e = [h for h in hops if h.get("role") == "end-to-end"] or hops
    outs = [o for h in e2e for o in h.get("outputs", [])]
    if not outs:
        return None, None, None, report.get("failed_hop")
    worst = max(outs, key=lambda o: float(o["max_abs_error"]))
    return (float(worst["max_abs_error"]), float(worst["reference_scale"]),
            max(float(o["max_rel_error"]) for o in outs), report.get("failed_hop"))


def convert_once(source: Path, model: ZooModel, target: str, work: Path, static_batch: bool,
                 timeout_s: float) -> Conversion:
    suffix, extra = TARGETS[target]
    tag = f"{model.name}_{target}{'_static' if static_batch else ''}"
    output, report_path, log = work / f"{tag}{suffix}", work / f"{tag}.report.json", work / f"{tag}.log"
    args = ["convert", str(source), "-o", str(output), *extra, "-q", "--report", str(report_path)]
    args += ["--static-batch"] if static_batch else []
    sidecar = output.with_name(output.name + ".crossport.json")
    child = run_measured([str(CROSSPORT), *args], log, (output, sidecar, report_path), child_env(), cwd=work,
                         timeout_s=max(timeout_s, 1.0))
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    max_abs, scale, rel_el, failed_hop = _worst_end_to_end(report)
    verified = child.exit_code == 0 and bool(report.get("passed")) and bool(report.get("verified"))
    return Conversion(
        target=target,
        command=" ".join(["crossport", *args]).replace(str(work) + "/", ""),
        converted=verified or child.exit_code == 1,
        verified=verified,
        reason="" if verified else (f"verification failed at hop {failed_hop}" if child.exit_code == 1 and failed_hop
                                    else _one_line_reason(log, child.exit_code, child.timed_out)),
        exit_code=child.exit_code, static_batch=static_batch, dynamic_batch_failure="",
        wall_s=child.wall_s, peak_rss_mib=child.peak_rss_mib,
        max_abs_error=max_abs, output_scale=scale,
        rel_error=(max_abs / scale) if max_abs is not None and scale else None,
        max_elementwise_rel_error=rel_el, failed_hop=failed_hop,
        route=tuple(report.get("route", ())), crossport_timings_s=dict(report.get("timings_s", {})),
        load=(child.loadavg_1m_before, child.loadavg_1m_after),
        artifact=str(output) if (verified or report.get("forced")) and output.exists() else None,
        input_layouts=tuple((t["source_layout"], t["target_layout"]) for t in report.get("inputs", [])),
        artifact_bytes=_size(output) if output.exists() else None,
        quantization=_quantization(report), probe_wall_s=child.probe_wall_s,
    )


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def _quantization(report: dict[str, Any]) -> dict[str, Any] | None:
    """The quantized file's metrics from crossport's report (first output), for the int8 columns."""
    q = report.get("quantization") or {}
    outs = q.get("outputs") or []
    if not outs:
        return None
    first = outs[0]["quantized"]
    return {"mode": q.get("mode"), "calibration": q.get("calibration"), "cosine": first["cosine"],
            "snr_db": first["snr_db"], "top1": first["top1_agreement"], "top5": first["top5_agreement"],
            "rows": first["rows"], "decided_by": outs[0]["decided_by"]}


def convert(source: Path, model: ZooModel, target: str, work: Path, deadline: float,
            start_static: bool, retry_static: bool = True) -> Conversion:
    """Convert with a dynamic batch; on failure (not a timeout) retry once with ``--static-batch``."""
    first = convert_once(source, model, target, work, start_static, deadline - time.monotonic())
    if first.verified or first.static_batch or first.exit_code is None or not retry_static:
        return first
    if first.quantization is not None:  # judged by quantization metrics: a fixed batch would not change them
        return first
    retry = convert_once(source, model, target, work, True, deadline - time.monotonic())
    if retry.verified:
        return replace(retry, dynamic_batch_failure=first.reason)
    same = retry.reason == first.reason
    return replace(first, reason=first.reason + (" (the same with --static-batch)" if same
                                                 else f"; with --static-batch: {retry.reason}"))


def skipped(target: str, reason: str) -> Conversion:
    return Conversion(target, "", False, False, reason, None, False, "", 0.0, 0.0, None, None, None, None, None,
                      (), {}, (0.0, 0.0))


# ------------------------------------------------------------------------------------------- child stages


def stage_make(name: str, work: Path) -> dict[str, Any]:
    """Build, calibrate and save one source model (child process)."""
    from benchmarks.zoo_models import save_source

    t0 = time.perf_counter()
    path, facts = save_source(ALL_MODELS[name], work)
    return {**facts, "path": str(path), "seconds": time.perf_counter() - t0}


def _single_thread() -> None:
    """One thread everywhere, set before any op runs: latency on a shared 2-CPU machine is otherwise noise."""
    import converter  # noqa: F401 - first: imports triton before TensorFlow (tensorflow/tensorflow#124205, see
    # converter/frameworks.py); without it torch.export.load segfaulted in this stage (exit -11)
    import tensorflow as tf
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def _paired_ms(source: Callable[[], Any], target: Callable[[], Any], runs: int,
               warmup: int = 3) -> tuple[float, float, float, float]:
    """Median ms of source and target, timed alternately so both see the same machine load; plus CPU seconds per
    wall second of each (about 1.0 confirms the single-thread setting held)."""
    for _ in range(warmup):
        source()
        target()
    times: dict[int, list[float]] = {0: [], 1: []}
    cpu: dict[int, list[float]] = {0: [], 1: []}
    for _ in range(runs):
        for k, call in ((0, source), (1, target)):
            c0, t0 = time.process_time(), time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t0)
            cpu[k].append(time.process_time() - c0)
    return (statistics.median(times[0]) * 1000.0, statistics.median(times[1]) * 1000.0,
            sum(cpu[0]) / sum(times[0]), sum(cpu[1]) / sum(times[1]))


def _first_output(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        value = value[sorted(value)[0]]
    if isinstance(value, (list, tuple)):
        value = value[0]
    return np.asarray(value.detach() if hasattr(value, "detach") else value)


def _count_keras_transposes(path: str) -> dict[str, int]:
    from converter.frameworks import keras

    model = keras().models.load_model(path)
    counts: dict[str, int] = {}

    def walk(ops: Any) -> None:
        for op in ops:
            kind = type(op).__name__
            if kind in ("Transpose", "Permute"):
                counts[kind] = counts.get(kind, 0) + 1
            if hasattr(op, "operations") and op is not model:
                walk(op.operations)

    walk(model.operations)
    return counts


def _count_graph_transposes(graph_def: Any) -> int:
    """Transpose nodes on the call tree of a TF graph (each called function counted once per call site)."""
    library = {f.signature.name: f for f in graph_def.library.function}

    def count(nodes: Any, depth: int) -> int:
        n = 0
        for node in nodes:
            if node.op == "Transpose":
                n += 1
            for key in ("f", "then_branch", "else_branch", "body", "cond"):
                if key in node.attr and node.attr[key].func.name in library and depth < 20:
                    n += count(library[node.attr[key].func.name].node_def, depth + 1)
        return n

    return count(graph_def.node, 0)


def _count_tflite_transposes(interpreter: Any) -> int:
    return sum(1 for op in interpreter._get_ops_details() if op.get("op_name") == "TRANSPOSE")


def _count_torch_permutes(program: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in program.graph.nodes:
        target = str(node.target) if node.op == "call_function" else ""
        for kind in ("permute", "transpose"):
            if f"aten.{kind}." in target:
                counts[kind] = counts.get(kind, 0) + 1
    return counts


def _feeds(model: ZooModel, seed: int) -> tuple[Any, Any]:
    """The same batch-1 input for both frameworks (torch tensor, numpy array), in the source's layout."""
    from benchmarks.zoo_models import keras_input, torch_input

    if model.direction == "torch2tf":
        x = torch_input(model, 1, seed)
        return x, x.numpy()
    x = keras_input(model, 1, seed)
    import torch

    if isinstance(x, dict):  # a dict-input Keras model; its .pt2 takes them in Keras' order (sorted names)
        return tuple(torch.from_numpy(x[k]) for k in sorted(x)), x
    return torch.from_numpy(x), x


def _source_runner(model: ZooModel, source: str, x_torch: Any, x_np: Any) -> Callable[[], Any]:
    import torch

    if model.direction == "torch2tf":
        module = torch.export.load(source).module()

        def run_torch() -> Any:
            with torch.inference_mode():
                return module(x_torch)

        return run_torch
    import tensorflow as tf

    from converter.frameworks import keras

    net = keras().models.load_model(source)
    fn = tf.function(lambda t: net(t, training=False))
    x = {k: tf.constant(v) for k, v in x_np.items()} if isinstance(x_np, dict) else tf.constant(x_np)
    return lambda: fn(x)


def _target_runner(job: dict[str, Any], x_np: Any) -> tuple[Callable[[], Any], dict[str, int]]:
    """A zero-argument call of the converted model on ``x_np`` (moved to its input layout), and its transposes."""
    import numpy as np

    from converter.layout import Layout, to_layout

    src_layout, dst_layout = job["input_layouts"][0] if job["input_layouts"] else ("none", "none")
    target, path = job["target"], job["artifact"]
    if isinstance(x_np, dict) and target == "pt2":  # integer inputs: no layout; Keras' order (sorted names)
        import torch

        program = torch.export.load(path)
        module = program.module()
        xs = tuple(torch.from_numpy(x_np[k]) for k in sorted(x_np))

        def run_dict() -> Any:
            with torch.inference_mode():
                return module(*xs)

        return run_dict, _count_torch_permutes(program)
    x = to_layout(x_np, Layout(src_layout), Layout(dst_layout))
    if target == "pt2":
        import torch

        program = torch.export.load(path)
        module = program.module()
        xt = torch.from_numpy(np.ascontiguousarray(x))

        def run_torch() -> Any:
            with torch.inference_mode():
                return module(xt)

        return run_torch, _count_torch_permutes(program)
    import tensorflow as tf

    if target == "keras":
        from converter.frameworks import keras

        net = keras().models.load_model(path)
        fn = tf.function(lambda t: net(t, training=False))
        xt = tf.constant(x.astype(net.inputs[0].dtype))
        return (lambda: fn(xt)), _count_keras_transposes(path)
    if target == "saved_model":
        loaded = tf.saved_model.load(path)
        sig = loaded.signatures["serving_default"]
        (name, spec), = sig.structured_input_signature[1].items()
        feeds = {name: tf.constant(x.astype(spec.dtype.as_numpy_dtype))}
        return (lambda: sig(**feeds)), {"Transpose": _count_graph_transposes(sig.graph.as_graph_def())}
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=path, num_threads=1)
    detail = interp.get_input_details()[0]  # by tensor, not signature: builder-made files carry no signature
    feed = x.astype(detail["dtype"])
    if tuple(detail["shape"]) != feed.shape:
        interp.resize_tensor_input(detail["index"], feed.shape)
    interp.allocate_tensors()
    out_index = interp.get_output_details()[0]["index"]

    def run_tflite() -> Any:
        interp.set_tensor(detail["index"], feed)
        interp.invoke()
        return interp.get_tensor(out_index)

    return run_tflite, {"TRANSPOSE": _count_tflite_transposes(interp)}


def stage_measure(name: str, work: Path) -> dict[str, Any]:
    """Latency of source and converted models + transposes (child process; job in ``{name}.measure_job.json``)."""
    import numpy as np

    _single_thread()
    job = json.loads((work / f"{name}.measure_job.json").read_text())
    model = ALL_MODELS[name]
    x_torch, x_np = _feeds(model, seed=7)
    source_call = _source_runner(model, job["source"], x_torch, x_np)
    reference = _first_output(source_call())
    out = []
    for target_job in job["targets"]:
        try:
            call, transposes = _target_runner(target_job, x_np)
            source_ms, ms, source_cpu, cpu = _paired_ms(source_call, call, job["runs"])
            got = _first_output(call())
            diff = float(np.abs(got - reference).max()) if got.shape == reference.shape else None
            out.append(asdict(Measurement(target_job["target"], ms, source_ms, ms / source_ms,
                                          sum(transposes.values()), transposes, diff, source_cpu, cpu)))
        except Exception as err:  # noqa: BLE001 - one target's failure must not hide the others' numbers
            out.append(asdict(Measurement(target_job["target"], None, None, None, None, {}, None, None, None,
                                          f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}")))
    return {"measurements": out}


STAGES: dict[str, Callable[[str, Path], dict[str, Any]]] = {"make": stage_make, "measure": stage_measure}


def run_stage(stage: str, name: str, work: Path, timeout_s: float) -> tuple[dict[str, Any] | None, ChildRun, str]:
    """Run ``stage`` for ``name`` in a child; return its JSON (None on failure), the child and an error line."""
    out, log = work / f"{name}.{stage}.json", work / f"{name}.{stage}.log"
    env = {**child_env(), "OMP_NUM_THREADS": "1"} if stage == "measure" else child_env()
    child = run_child([sys.executable, str(Path(__file__).resolve()), "--stage", stage, name, str(work), str(out)],
                      log, env, cwd=work, timeout_s=max(timeout_s, 1.0))
    if child.timed_out:
        return None, child, "timeout"
    if child.exit_code != 0 or not out.is_file():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        return None, child, f"{stage} stage failed (exit {child.exit_code}): {tail[-1][:300] if tail else ''}"
    return json.loads(out.read_text()), child, ""


# --------------------------------------------------------------------------------------------------- parent


def run_model(model: ZooModel, config: ZooConfig, work: Path) -> ModelResult:
    """make -> convert per target -> measure, all under one per-model deadline."""
    t0 = time.monotonic()
    deadline = t0 + config.timeout_s
    mdir = work / model.name
    mdir.mkdir()
    targets = config.targets(model)
    config.log(f"[{time.strftime('%H:%M:%S')}] {model.name}: make")
    made, make_child, err = run_stage("make", model.name, mdir, deadline - time.monotonic())
    make = {**(made or {}), "child": make_child.to_dict()}
    if made is None:
        return ModelResult(model.name, model.direction, model.origin, model.input_shape, model.input_dtype, {},
                           make, tuple(skipped(t, err) for t in targets), (), None, time.monotonic() - t0, err)
    conversions: list[Conversion] = []
    static = not made["dynamic_batch"]
    retry = True  # once a --static-batch retry did not help this model, do not pay for it on the next target
    for target in targets:
        if time.monotonic() >= deadline:
            conversions.append(skipped(target, "timeout"))
            continue
        config.log(f"[{time.strftime('%H:%M:%S')}] {model.name}: convert -> {target}")
        conv = convert(Path(made["path"]), model, target, mdir, deadline, static, retry)
        static = static or conv.static_batch and conv.verified
        retry = retry and (conv.verified or "with --static-batch" not in conv.reason)
        if model.footprint_only and conv.verified:
            conv = _footprint(conv, Path(made["path"]), model, target, mdir, deadline)
        conversions.append(conv)
        config.log(f"    {'verified' if conv.verified else conv.reason} in {conv.wall_s:.1f} s"
                   + (" (--static-batch)" if conv.static_batch else ""))
    measurements, measure_child = _measure(model, config, made, conversions, mdir, deadline)
    if not config.keep:
        shutil.rmtree(mdir, ignore_errors=True)
    source = {k: v for k, v in made.items() if k not in ("path", "seconds")}
    return ModelResult(model.name, model.direction, model.origin, model.input_shape, model.input_dtype, source,
                       make, tuple(conversions), measurements, measure_child, time.monotonic() - t0)


FOOTPRINT_RUNS = 3


def _footprint(first: Conversion, source: Path, model: ZooModel, target: str, mdir: Path,
               deadline: float) -> Conversion:
    """The footprint is the baseline of every model's "+N×w", so one sampled peak is not enough: the full run of
    2026-12-06 12:21 UTC read 1,197 MiB for PyTorch -> TF, three runs right after it 1,356-1,379 MiB. The median
    of ``FOOTPRINT_RUNS`` conversions."""
    import statistics

    peaks = [first.peak_rss_mib]
    for i in range(1, FOOTPRINT_RUNS):
        again_dir = mdir / f"footprint_{i}"  # a directory of its own: crossport refuses an existing output
        again_dir.mkdir(exist_ok=True)
        again = convert_once(source, model, target, again_dir, first.static_batch, deadline - time.monotonic())
        if not again.verified:
            break
        peaks.append(again.peak_rss_mib)
    return replace(first, peak_rss_mib=statistics.median(peaks), footprint_peaks_mib=tuple(peaks))


def _measure(model: ZooModel, config: ZooConfig, made: dict[str, Any], conversions: list[Conversion], mdir: Path,
             deadline: float) -> tuple[tuple[Measurement, ...], dict[str, Any] | None]:
    done = [c for c in conversions if c.artifact]
    if not config.measure or model.footprint_only or not done:
        return (), None
    job = {"source": made["path"], "runs": 5 if config.quick else config.latency_runs,
           "targets": [{"target": c.target, "artifact": c.artifact, "input_layouts": c.input_layouts} for c in done]}
    (mdir / f"{model.name}.measure_job.json").write_text(json.dumps(job))
    config.log(f"[{time.strftime('%H:%M:%S')}] {model.name}: measure ({len(done)} target(s))")
    data, child, err = run_stage("measure", model.name, mdir, deadline - time.monotonic())
    if data is None:
        return (tuple(Measurement(c.target, None, None, None, None, {}, None, error=err) for c in done),
                child.to_dict())
    return tuple(Measurement(**m) for m in data["measurements"]), child.to_dict()


def raw_baseline(work: Path, timeout_s: float) -> dict[str, Any]:
    """The raw upstream ResNet-18 path of ``benchmarks/resnet18.py`` (its ``raw`` stage), in this run."""
    import importlib.util

    from benchmarks import resnet18

    if importlib.util.find_spec("onnx2tf") is None:  # an extra with its own pins (pyproject.toml, [onnx2tf])
        return {"error": "onnx2tf is not installed in this environment (pip install -e '.[onnx2tf]' in a venv of "
                         "its own); the raw baseline was not run"}
    raw_dir = work / "raw_resnet18"
    raw_dir.mkdir()
    try:
        return resnet18.run_stage("raw", raw_dir, timeout_s=timeout_s)
    except SystemExit as err:
        return {"error": str(err)[-2000:]}


def footprint(results: list[ModelResult]) -> dict[str, float]:
    """Peak RSS of the tiny models' conversions per route, keyed ``direction/target``: the frameworks' footprint,
    not the model's."""
    out = {}
    for r in results:
        if r.name in {m.name for m in FOOTPRINT_MODELS}:
            out.update({footprint_key(r.direction, c.target): c.peak_rss_mib for c in r.conversions if c.verified})
    return out


def footprint_key(direction: str, target: str) -> str:
    """The footprint a ``target`` row of ``direction`` is measured against."""
    return f"{direction}/{FOOTPRINT_OF.get(target, target)}"


def speedup(raw: dict[str, Any], results: list[ModelResult]) -> dict[str, Any]:
    if "export_plus_convert_s" not in raw:
        return {}
    resnet = next((r for r in results if r.name == "resnet18"), None)
    out: dict[str, Any] = {"raw_export_plus_convert_s": raw["export_plus_convert_s"],
                           "definition": "raw torch.onnx.export + onnx2tf.convert seconds (defaults, in-process, "
                                         "imports and verification excluded) / crossport convert subprocess wall "
                                         "time (process start, imports and verification included)"}
    for c in resnet.conversions if resnet else ():
        if c.verified:
            out[f"{c.target}_s"] = c.wall_s
            out[f"{c.target}_vs_raw"] = raw["export_plus_convert_s"] / c.wall_s
    return out


def run_zoo(config: ZooConfig, work: Path | None = None) -> dict[str, Any]:
    """Run the selected zoo and return the results dict (the CLI writes it to ``benchmarks/results/zoo.json``)."""
    started = time.monotonic()
    own_work = work is None
    work = work or Path(tempfile.mkdtemp(prefix="crossport-bench-zoo-"))
    config.log(f"work dir: {work}")
    models = list(config.models())
    if config.footprint and not config.quick and not config.only:
        models = list(FOOTPRINT_MODELS) + models  # cheap; first, so a cut-short run still has the footprint
    loads = [_load()]
    results: list[ModelResult] = []
    extra: dict[str, Any] = {}
    try:
        if config.startup:
            config.log(f"[{time.strftime('%H:%M:%S')}] start-up: crossport --help, crossport rewrite (2,000 lines)")
            extra["startup"] = {"help": guarded(measure_help),
                                "rewrite_2000_lines": guarded(measure_rewrite, work)}
            loads.append(_load())
        for model in models:
            results.append(run_model(model, config, work))
            loads.append(_load())
            if model.name == "resnet18" and config.raw_baseline and not config.quick:  # same run, right after
                config.log(f"[{time.strftime('%H:%M:%S')}] raw upstream ResNet-18 (torch.onnx.export + onnx2tf "
                           "defaults)")
                extra["raw_baseline_resnet18"] = raw_baseline(work, config.timeout_s)
                extra["speedup_resnet18"] = speedup(extra["raw_baseline_resnet18"], results)
                loads.append(_load())
            if config.partial_output:
                partial = {**_assemble(config, results, extra, loads, started), "partial": True}
                config.partial_output.write_text(json.dumps(partial, indent=2, default=str) + "\n")
    finally:
        if own_work and not config.keep:
            shutil.rmtree(work, ignore_errors=True)
    return _assemble(config, results, extra, loads, started)


def _assemble(config: ZooConfig, results: list[ModelResult], extra: dict[str, Any], loads: list[float],
              started: float) -> dict[str, Any]:
    fp = footprint(results)
    return {
        "benchmark": "zoo",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items() if k != "log"},
        "latency_method": "batch 1, same input for source and converted model, 3 warm-up calls, then source and "
                          f"converted called alternately, median of {5 if config.quick else config.latency_runs} "
                          "timed calls each; single thread: torch.set_num_threads(1)/set_num_interop_threads(1), "
                          "TensorFlow intra/inter-op 1, TFLite num_threads=1, OMP_NUM_THREADS=1; PyTorch: "
                          "torch.export.load(...).module() under inference_mode; Keras: tf.function(model(x, "
                          "training=False)); SavedModel: serving signature; TFLite: interpreter invoke",
        "machine": machine(),
        "loadavg_1m": {"min": min(loads), "max": max(loads), "samples": loads},
        "total_wall_s": time.monotonic() - started,
        "framework_footprint_peak_rss_mib": fp,
        "models": [_model_dict(r, fp) for r in results],
        **extra,
    }


def _model_dict(r: ModelResult, fp: dict[str, float]) -> dict[str, Any]:
    d = asdict(r)
    weights_mib = r.source.get("weights_bytes", 0) / 2**20
    for c in d["conversions"]:
        base = fp.get(footprint_key(r.direction, c["target"]))
        c["rss_over_footprint_per_weights"] = ((c["peak_rss_mib"] - base) / weights_mib
                                               if base and weights_mib and c["peak_rss_mib"] else None)
    return d


def _load() -> float:
    import os

    return os.getloadavg()[0]


# ---------------------------------------------------------------------------------------- expected status


def statuses(results: dict[str, Any]) -> dict[str, dict[str, dict[str, bool]]]:
    """{model: {target: {converted, verified}}}: what the CI smoke test holds the zoo to."""
    return {m["name"]: {c["target"]: {"converted": c["converted"], "verified": c["verified"]}
                        for c in m["conversions"]} for m in results["models"]}


def regressions(results: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Models/targets that converted (or verified) in ``expected`` and no longer do."""
    out = []
    for name, targets in statuses(results).items():
        for target, now in targets.items():
            before = expected.get(name, {}).get(target)
            if before is None:
                continue
            for key in ("converted", "verified"):
                if before[key] and not now[key]:
                    reason = next(c["reason"] for m in results["models"] if m["name"] == name
                                  for c in m["conversions"] if c["target"] == target)
                    out.append(f"{name} -> {target}: no longer {key} ({reason})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", nargs=4, metavar=("STAGE", "NAME", "WORKDIR", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help="comma-separated model names (default: the whole zoo)")
    parser.add_argument("--quick", action="store_true",
                        help=".keras/.pt2 targets only, 5 latency runs, no raw upstream baseline, no footprint models")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per-model budget in seconds")
    parser.add_argument("--runs", type=int, default=20, help="timed inference calls per model (median reported)")
    parser.add_argument("--no-raw", action="store_true", help="skip the raw upstream ResNet-18 baseline")
    parser.add_argument("--no-measure", action="store_true", help="skip latency and transpose counts")
    parser.add_argument("--no-startup", action="store_true", help="skip the crossport start-up timings")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON (default: %(default)s)")
    parser.add_argument("--update-expected", action="store_true",
                        help=f"record this run's converted/verified status in {EXPECTED.relative_to(ROOT)}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--targets", default="", help=f"comma-separated subset of {', '.join(TARGETS)}")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 .tflite of the image models")
    parser.add_argument("--no-footprint", action="store_true", help="skip the tiny footprint models")
    args = parser.parse_args()
    if args.stage:
        stage, name, work, out = args.stage
        Path(out).write_text(json.dumps(STAGES[stage](name, Path(work)), indent=2, default=str))
        return
    interruptible()
    config = ZooConfig(only=tuple(n for n in args.only.split(",") if n), quick=args.quick, timeout_s=args.timeout,
                       latency_runs=args.runs, measure=not args.no_measure, raw_baseline=not args.no_raw,
                       startup=not args.no_startup, footprint=not args.no_footprint, int8=not args.no_int8,
                       only_targets=tuple(t for t in args.targets.split(",") if t),
                       keep=args.keep, partial_output=args.output.with_suffix(".partial.json"))
    results = run_zoo(config)
    results["command"] = " ".join([".venv/bin/python", "benchmarks/zoo.py", *sys.argv[1:]])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    config.partial_output.unlink(missing_ok=True)
    if args.update_expected:
        merged = {**(json.loads(EXPECTED.read_text()) if EXPECTED.is_file() else {}), **statuses(results)}
        EXPECTED.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    from benchmarks.report import int8_table, summary, zoo_table

    print(zoo_table(results))
    if int8_table(results):
        print(int8_table(results))
    print(summary(results))
    print(f"\nwrote {args.output} in {results['total_wall_s']:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
