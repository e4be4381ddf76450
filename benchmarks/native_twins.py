"""Keras -> PyTorch conversions against the same architecture written natively in PyTorch (issue #19).

    .venv/bin/python benchmarks/native_twins.py                         # all, writes results/native_twins.json
    .venv/bin/python benchmarks/native_twins.py --only ResNet50,keras_lstm --work /tmp/twins   # reuse sources

A user who converts ``keras.applications.ResNet50`` to ``.pt2`` compares it with ``torchvision.models.resnet50``,
not with Keras. Per model, each step in its own child process (``benchmarks/common.run_child``):

1. *make*: the zoo's calibrated Keras model (``benchmarks/zoo_models.py``), saved as ``.keras`` (kept in ``--work``
   and reused when present, so runs before and after a change convert the same file).
2. *convert*: ``crossport convert SRC -o OUT.pt2 -q --report R`` (verification on), as ``benchmarks/zoo.py`` does.
3. *measure*, single-threaded (``torch.set_num_threads(1)``, OMP 1, TensorFlow 1 thread): the ``.pt2``
   (``torch.export.load(p).module()``) on the Keras NHWC input; the native twin (``weights=None``, eval) on the
   same values in NCHW (made contiguous outside the timing: the twin's user holds NCHW data); for images also the
   twin and its input in ``torch.channels_last``, as a PyTorch user tuning for CPU runs it (the converted model
   runs channels-last from its NHWC input's view; the ratio is against the faster of the two twins); and the
   Keras source. 3 warm-up calls each, then called alternately, median of ``--runs`` calls. NASNetMobile has no
   torchvision twin: its twin is ``benchmarks/nasnet_twin.py`` (NASNet-A written in PyTorch, shown equal to
   Keras' by ``tests/test_nasnet_twin.py``). ``keras_lstm``'s twin is Embedding -> 2-layer ``nn.LSTM`` -> Linear
   of the same sizes, also timed at batch 32 (at batch 1 its 0.6 ms call is mostly fixed per-call cost).
   ``permutes``: ``aten.permute`` + ``aten.transpose`` nodes of the ExportedProgram (the zoo's count); ``ops``:
   its ATen op histogram.
"""
from __future__ import annotations

import argparse
import collections
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, child_env, machine, run_child  # noqa: E402
from benchmarks.zoo_models import ALL_MODELS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "native_twins.json"
TWINS: dict[str, str | None] = {"MobileNetV2": "mobilenet_v2", "ResNet50": "resnet50",
                                "EfficientNetB0": "efficientnet_b0", "DenseNet121": "densenet121",
                                "ConvNeXtTiny": "convnext_tiny", "NASNetMobile": "nasnet_mobile", "keras_lstm": "lstm"}


def _twin(name: str | None) -> Any:
    """The native PyTorch architecture (random weights, eval), or None."""
    import torch
    from torch import nn

    if name is None:
        return None
    if name == "nasnet_mobile":
        from benchmarks.nasnet_twin import NASNet

        return NASNet().eval()
    if name != "lstm":
        import torchvision

        return getattr(torchvision.models, name)(weights=None).eval()

    class LstmTwin(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(1000, 64)
            self.lstm = nn.LSTM(64, 128, num_layers=2, batch_first=True)
            self.head = nn.Linear(128, 10)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(self.embed(tokens))[0][:, -1])

    return LstmTwin().eval()


def _paired(calls: dict[str, Callable[[], Any]], runs: int, warmup: int = 3) -> dict[str, float]:
    """Median ms per call, all called alternately so that each sees the same machine load."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(runs):
        for k, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000.0 for k, v in times.items()}


def stage_measure(name: str, source: str, pt2: str, runs: int) -> dict[str, Any]:
    from benchmarks.zoo import _count_torch_permutes, _single_thread
    from benchmarks.zoo_models import keras_input

    _single_thread()
    import tensorflow as tf
    import torch

    from converter.frameworks import keras

    x_np = keras_input(ALL_MODELS[name], 1, seed=7)
    program = torch.export.load(pt2)
    converted = program.module()
    x_conv = torch.from_numpy(x_np)
    twin = _twin(TWINS[name])
    x_twin = x_conv.long() if x_np.ndim == 2 else x_conv.permute(0, 3, 1, 2).contiguous()
    net = keras().models.load_model(source)
    fn = tf.function(lambda t: net(t, training=False))
    x_tf = tf.constant(x_np)

    def under_inference(module: Any, x: Any) -> Callable[[], Any]:
        def call() -> Any:
            with torch.inference_mode():
                return module(x)

        return call

    calls = {"converted": under_inference(converted, x_conv), "keras": lambda: fn(x_tf)}
    if twin is not None:
        calls["twin"] = under_inference(twin, x_twin)
        if x_twin.ndim == 4:  # the same twin as a PyTorch author tuning for CPU would run it
            twin_cl = copy.deepcopy(twin).to(memory_format=torch.channels_last)
            calls["twin_channels_last"] = under_inference(
                twin_cl, x_twin.contiguous(memory_format=torch.channels_last))
    ms = _paired(calls, runs)
    best_twin = min((ms[k] for k in ("twin", "twin_channels_last") if k in ms), default=None)
    batch32: dict[str, float] = {}
    if twin is not None and x_np.ndim == 2:  # a sequence model: its per-call overhead next to its kernels' time
        x32 = torch.from_numpy(keras_input(ALL_MODELS[name], 32, seed=7))
        batch32 = _paired({"converted": under_inference(converted, x32), "twin": under_inference(twin, x32.long())},
                          runs)
    ops = collections.Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")
    err = float((calls["converted"]().numpy() - fn(x_tf).numpy()).__abs__().max())
    return {"ms": ms, "twin": TWINS[name], "permutes": sum(_count_torch_permutes(program).values()),
            "ops": dict(ops.most_common()), "max_abs_vs_keras": err,
            "ratio_vs_twin": ms["converted"] / best_twin if best_twin is not None else None,
            "ratio_vs_keras": ms["converted"] / ms["keras"],
            **({"ms_batch32": batch32, "ratio_vs_twin_batch32": batch32["converted"] / batch32["twin"]}
               if batch32 else {})}


def stage_make(name: str, path: str) -> dict[str, Any]:
    from benchmarks.zoo_models import save_keras

    return save_keras(ALL_MODELS[name], Path(path))


def _child(args: list[str], work: Path, tag: str, env: dict[str, str]) -> dict[str, Any]:
    out, log = work / f"{tag}.json", work / f"{tag}.log"
    run = run_child([sys.executable, str(Path(__file__).resolve()), "--stage", *args, str(out)], log, env, cwd=work)
    if run.exit_code != 0 or not out.is_file():
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
        return {"error": f"exit {run.exit_code}: {tail[0] if tail else ''}"}
    return {**json.loads(out.read_text()), "load_1m": [run.loadavg_1m_before, run.loadavg_1m_after]}


def run_model(name: str, work: Path, runs: int, log: Callable[[str], None]) -> dict[str, Any]:
    from benchmarks.zoo import convert_once

    source = work / f"{name}.keras"
    if not source.is_file():
        log(f"{name}: make")
        made = _child(["make", name, str(source)], work, f"{name}.make", child_env())
        if "error" in made:
            return {"name": name, "error": f"make: {made['error']}"}
    log(f"{name}: convert")
    conv = convert_once(source, ALL_MODELS[name], "pt2", work, static_batch=False, timeout_s=1800)
    if not conv.verified:
        conv = convert_once(source, ALL_MODELS[name], "pt2", work, static_batch=True, timeout_s=1800)
    result: dict[str, Any] = {"name": name, "command": conv.command, "verified": conv.verified,
                              "convert_s": conv.wall_s, "max_abs_error": conv.max_abs_error,
                              "static_batch": conv.static_batch}
    if conv.artifact is None:
        return {**result, "error": f"convert: {conv.reason}"}
    log(f"{name}: measure")
    measured = _child(["measure", name, str(source), conv.artifact, str(runs)], work, f"{name}.measure",
                      {**child_env(), "OMP_NUM_THREADS": "1"})
    return {**result, **measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(TWINS)}")
    parser.add_argument("--runs", type=int, default=20, help="timed calls per model (median reported)")
    parser.add_argument("--work", type=Path, default=None, help="work directory; its .keras sources are reused")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.stage:
        stage, *rest, out = args.stage
        result = stage_make(*rest) if stage == "make" else stage_measure(rest[0], rest[1], rest[2], int(rest[3]))
        Path(out).write_text(json.dumps(result, indent=2, default=str))
        return
    names = [n for n in args.only.split(",") if n] or list(TWINS)
    work = args.work or Path(tempfile.mkdtemp(prefix="crossport_twins_"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    models = []
    for name in names:
        models.append(run_model(name, work, args.runs, lambda m: print(m, file=sys.stderr, flush=True)))
        m = models[-1]
        ms = m.get("ms", {})
        print(f"{name}: converted {ms.get('converted', float('nan')):.1f} ms, twin {ms.get('twin', float('nan')):.1f}"
              f" ms, keras {ms.get('keras', float('nan')):.1f} ms, permutes {m.get('permutes')} "
              f"{m.get('error', '')}", file=sys.stderr, flush=True)
    results = {"command": " ".join([".venv/bin/python", "benchmarks/native_twins.py", *sys.argv[1:]]),
               "machine": machine(), "runs": args.runs, "total_wall_s": time.perf_counter() - t0,
               "models": models}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))


def table(results: dict[str, Any]) -> str:
    rows = ["| model | native twin | latency ms: converted .pt2 / faster twin (ratio) | twin ms: NCHW / channels-last "
            "| Keras source ms | permutes |", "|---|---|---|---|---:|---:|"]
    for m in results["models"]:
        ms = m.get("ms", {})
        if not ms:
            rows.append(f"| {m['name']} | | {m.get('error', '')} | | | |")
            continue
        best = ms["converted"] / m["ratio_vs_twin"] if m.get("ratio_vs_twin") else None
        twin = (f"{ms['converted']:.1f} / {best:.1f} (×{m['ratio_vs_twin']:.2f})" if best is not None
                else f"{ms['converted']:.1f} / — (×{m['ratio_vs_keras']:.2f} vs Keras)")
        layouts = " / ".join(f"{ms[k]:.1f}" if k in ms else "—" for k in ("twin", "twin_channels_last"))
        if m.get("ms_batch32"):
            b32 = m["ms_batch32"]
            twin += f"; batch 32: {b32['converted']:.1f} / {b32['twin']:.1f} (×{m['ratio_vs_twin_batch32']:.2f})"
        rows.append(f"| {m['name']} | {m['twin'] or '—'} | {twin} | {layouts} | {ms['keras']:.1f} "
                    f"| {m['permutes']} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
