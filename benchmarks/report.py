"""Markdown for the README from a zoo results file (``benchmarks/results/zoo.json`` by default) or a peers results
file (``benchmarks/results/peers.json``: crossport next to litert-torch and nobuco).

    .venv/bin/python benchmarks/report.py [results.json]

Prints the per-model table, then the summary lines (ResNet-18 speed-up against the raw upstream path measured in
the same run, start-up times, models that did not convert and why, machine and load). Only the standard library
is used: the table can be regenerated anywhere from the JSON.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "zoo.json"
DIRECTION = {"torch2tf": "PyTorch → TF", "keras2torch": "Keras → PyTorch"}
TARGET = {"keras": ".keras", "saved_model": "SavedModel", "tflite": ".tflite", "tflite_int8": ".tflite int8",
          "pt2": ".pt2"}


def _sci(x: float | None) -> str:
    return "—" if x is None else f"{x:.1e}"


def _num(x: float | None, fmt: str = ".1f") -> str:
    return "—" if x is None else format(x, fmt)


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def _measurement(model: dict[str, Any], target: str) -> dict[str, Any]:
    return next((m for m in model.get("measurements", []) if m["target"] == target), {})


def _row(model: dict[str, Any], conv: dict[str, Any]) -> str:
    m = _measurement(model, conv["target"])
    latency = "—"
    if m.get("latency_ms") is not None:
        latency = f"{m['source_latency_ms']:.1f} → {m['latency_ms']:.1f} (×{m['latency_ratio']:.2f})"
    weights = model["source"].get("weights_bytes")
    rss = _num(conv["peak_rss_mib"], ".0f") if conv["exit_code"] is not None else "—"
    if conv.get("rss_over_footprint_per_weights") is not None:
        rss += f" (+{conv['rss_over_footprint_per_weights']:.1f}×w)"
    converted = _yes(conv["converted"]) + (" (static batch)" if conv["static_batch"] else "")
    return (f"| {model['name']} | {TARGET[conv['target']]} | {_num(weights / 2**20 if weights else None)} "
            f"| {converted} | {_yes(conv['verified'])} | {_sci(conv['max_abs_error'])} | {_sci(conv['rel_error'])} "
            f"| {_num(conv['wall_s'] or None)} | {latency} | {_num(m.get('transposes'), 'd')} | {rss} |")


def _footprint_label(key: str) -> str:
    """``torch2tf/tflite`` -> "PyTorch → TF → .tflite"; a results file from before the per-target footprint keys
    it by direction alone."""
    direction, _, target = key.partition("/")
    return DIRECTION.get(direction, direction) + (f" → {TARGET.get(target, target)}" if target else "")


def zoo_table(results: dict[str, Any]) -> str:
    """One row per model and target, grouped by direction."""
    head = ("| model | target | weights (MiB) | converted | verified | max abs err | rel err | convert (s) "
            "| latency ms: source → converted (ratio) | transposes | peak RSS MiB (+excess × weights) |\n"
            "|---|---|---:|---|---|---:|---:|---:|---|---:|---:|")
    out = []
    for direction, label in DIRECTION.items():
        models = [m for m in results["models"] if m["direction"] == direction
                  and not m["origin"].startswith("fixtures")]
        if not models:
            continue
        out.append(f"**{label}**\n\n{head}")
        out.extend(_row(m, c) for m in models for c in m["conversions"])
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def int8_table(results: dict[str, Any]) -> str:
    """The image models' int8 TFLite next to their float32 TFLite: size, latency, and what quantization cost."""
    rows = []
    for m in results["models"]:
        convs = {c["target"]: c for c in m["conversions"]}
        q8 = convs.get("tflite_int8")
        if q8 is None:
            continue
        f32 = convs.get("tflite", {})
        lat8, lat32 = _measurement(m, "tflite_int8"), _measurement(m, "tflite")
        mib = lambda c: _num(c["artifact_bytes"] / 2**20) if c.get("artifact_bytes") else "—"  # noqa: E731
        q = q8.get("quantization") or {}
        top1 = f"{q['top1']:.0%} of {q['rows']}" if q.get("top1") is not None else "—"
        top5 = f"{q['top5']:.0%}" if q.get("top5") is not None else "—"
        rows.append(f"| {m['name']} | {mib(f32)} → {mib(q8)} | {_num(lat32.get('latency_ms'))} → "
                    f"{_num(lat8.get('latency_ms'))} | {_num(q.get('cosine'), '.4f')} | {_num(q.get('snr_db'))} "
                    f"| {top1} | {top5} | {_yes(q8['verified'])} |")
    if not rows:
        return ""
    head = ("| model | .tflite MiB: float32 → int8 | latency ms: float32 → int8 | cosine | SNR dB | top-1 agreement "
            "| top-5 | verified |\n|---|---:|---:|---:|---:|---:|---:|---|")
    return "**int8 TFLite** (`--quantize int8`, seeded calibration; metrics vs the PyTorch source)\n\n" + head + \
        "\n" + "\n".join(rows) + "\n"


def failures(results: dict[str, Any]) -> list[str]:
    lines = []
    for m in results["models"]:
        for c in m["conversions"]:
            if not c["verified"]:
                lines.append(f"- {m['name']} → {TARGET[c['target']]}: {c['reason']}"
                             + (f"  \n  `{c['command']}`" if c["command"] else ""))
            elif c["static_batch"] and c["dynamic_batch_failure"]:
                lines.append(f"- {m['name']} → {TARGET[c['target']]}: converted only with `--static-batch` "
                             f"(dynamic batch: {c['dynamic_batch_failure']})")
        for meas in m.get("measurements", []):
            if meas.get("error"):
                lines.append(f"- {m['name']} → {TARGET[meas['target']]}: latency not measured ({meas['error']})")
    return lines


def summary(results: dict[str, Any]) -> str:
    """Speed-up, start-up, failures, machine and load, as short markdown lines."""
    lines = []
    s = results.get("speedup_resnet18") or {}
    raw = results.get("raw_baseline_resnet18") or {}
    if s:
        parts = [f"{TARGET[t]} ×{s[f'{t}_vs_raw']:.1f} ({s[f'{t}_s']:.1f} s)"
                 for t in ("keras", "saved_model", "tflite") if f"{t}_vs_raw" in s]
        lines.append(f"- ResNet-18, same run: raw `torch.onnx.export` + `onnx2tf.convert` (defaults) "
                     f"{s['raw_export_plus_convert_s']:.1f} s (whole process {raw['child']['wall_s']:.1f} s, "
                     f"peak RSS {raw['child']['peak_rss_mib']:.0f} MiB) vs `crossport convert`, verification "
                     f"included: " + ", ".join(parts) + ".")
    elif raw.get("error"):
        last = [ln for ln in raw["error"].splitlines() if ln.strip()]  # the cause is the log's last line
        lines.append(f"- raw upstream ResNet-18 baseline failed: {last[0]}"
                     + (f" ... {last[-1].strip()}" if len(last) > 1 else ""))
    st = results.get("startup")
    broken = {k: v["error"] for k, v in (st or {}).items() if "error" in v}
    if broken:
        lines.append("- Start-up not measured: " + "; ".join(f"{k}: {v}" for k, v in broken.items()) + ".")
    elif st:
        h, rw = st["help"], st["rewrite_2000_lines"]
        heavy = [mod for mod in ("torch", "tensorflow", "keras")
                 if any(probe.get(mod) for probe in (*h["imports"].values(), rw["imports"]))]
        lines.append(f"- Start-up: `crossport --help` {h['median_s']:.2f} s (median of {len(h['runs_s'])}); "
                     f"`crossport rewrite` of a {rw['lines']}-line file {rw['median_s']:.2f} s "
                     f"(median of {len(rw['runs_s'])}); frameworks imported: "
                     + (", ".join(heavy) if heavy else "none (torch, tensorflow, keras checked)") + ".")
    fp = results.get("framework_footprint_peak_rss_mib") or {}
    if fp:
        lines.append("- Framework footprint (peak RSS converting a tiny model; the median of 3 conversions since "
                     "2026-12-06 13:30 UTC; per target since 2026-12-06 15:40 UTC): "
                     + ", ".join(_footprint_label(k) + f" {v:.0f} MiB" for k, v in fp.items())
                     + "; “+N×w” = (peak − the footprint of the row's own target) ÷ weights size.")
    fails = failures(results)
    lines.append("- Not converted / not verified / notes:" + ("" if fails else " none."))
    lines.extend("  " + f for f in fails)
    mach, load = results["machine"], results["loadavg_1m"]
    lines.append(f"- Run: {results['date_utc']}, `{results.get('command', 'benchmarks/zoo.py')}`, total "
                 f"{results['total_wall_s'] / 60:.1f} min; {mach['nproc']} CPUs ({mach['cpu']}), "
                 f"{mach['memory_gib']} GiB; 1-minute load {load['min']:.1f}–{load['max']:.1f}; commit "
                 f"{mach['git_commit']}{' + working tree' if mach['git_dirty'] else ''}; torch "
                 f"{mach['versions'].get('torch')}, TensorFlow {mach['versions'].get('tensorflow')}, Keras "
                 f"{mach['versions'].get('keras')}, onnx2tf {mach['versions'].get('onnx2tf')}.")
    return "\n".join(lines) + "\n"


PEER_TARGET = {"tflite": ".tflite", "keras": ".keras"}


def _peer_row(pair: dict[str, Any]) -> str:
    ours, theirs = pair["crossport"], pair["peer_run"]
    ours_s = _num(ours["wall_s"]) if ours["ok"] else f"**failed** ({ours['reason']})"
    if ours["ok"] and ours.get("static_batch"):
        ours_s += " (static batch)"
    theirs_s = _num(theirs.get("wall_s")) if theirs.get("ok") else f"**failed**: {theirs.get('error', '')}"
    if pair.get("peer_date_utc"):  # --crossport-only: the peer's number comes from an earlier run
        theirs_s += f" ({pair['peer_date_utc'][:16].replace('T', ' ')})"
    ratio = pair.get("ratio_crossport_over_peer")
    loads = [x for side in (ours, theirs) for x in side.get("load") or []]
    load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "—"
    rss = lambda side: _num(side.get("peak_rss_mib"), ".0f") if side.get("ok") else "—"  # noqa: E731
    return (f"| {pair['model']} | {pair['peer']} → {PEER_TARGET[pair['target']]} | {ours_s} | {theirs_s} "
            f"| {'—' if ratio is None else f'×{ratio:.2f}'} | {rss(ours)} / {rss(theirs)} | {load} |")


def peers_table(results: dict[str, Any]) -> str:
    """One row per model and peer: crossport's time, the peer's time, their ratio and the load while they ran."""
    head = ("| model | peer → format | crossport (s) | peer (s) | ratio crossport ÷ peer | peak RSS MiB: crossport / "
            "peer | 1-min load |\n|---|---|---:|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(_peer_row(p) for p in results["pairs"]) + "\n"


def peers_summary(results: dict[str, Any]) -> str:
    """How each peer was run and installed, the timing definition, machine, load and command."""
    lines = [f"- Timing: {results['timing']}."]
    for name, info in results["peers"].items():
        versions = ", ".join(f"{k} {v}" for k, v in info.get("versions", {}).items() if v)
        lines.append(f"- {name} {info['version']}: " + (f"`{info['how']}`; its venv: {versions}." if info["installed"]
                                                        else f"not installed: {info['install_error']}"))
        dyn = info.get("dynamic_batch_check")
        if dyn:
            lines.append(f"  - With a dynamic batch (ResNet-18, traced with batch 2): "
                         + ("converts" if dyn["ok"] else f"fails: {dyn['error'].rstrip('.')}") + ".")
    mach, load = results["machine"], results["loadavg_1m"]
    lines.append(f"- Run: {results['date_utc']}, `{results.get('command', 'benchmarks/peers.py')}`, total "
                 f"{results['total_wall_s'] / 60:.1f} min; {mach['nproc']} CPUs ({mach['cpu']}), "
                 f"{mach['memory_gib']} GiB; 1-minute load {load['min']:.1f}–{load['max']:.1f}; commit "
                 f"{mach['git_commit']}{' + working tree' if mach['git_dirty'] else ''}; crossport's venv: torch "
                 f"{mach['versions'].get('torch')}, TensorFlow {mach['versions'].get('tensorflow')}, Keras "
                 f"{mach['versions'].get('keras')}.")
    for run in results.get("runs", [])[:-1]:  # earlier runs whose pairs the file still holds
        lines.append(f"  - Earlier: {run['date_utc']}, `{run['command']}`, commit {run['git_commit']}, 1-minute load "
                     f"{run['loadavg_1m']['min']:.1f}–{run['loadavg_1m']['max']:.1f}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else RESULTS
    results = json.loads(path.read_text())
    if results.get("benchmark") == "peers":
        print(peers_table(results))
        print(peers_summary(results))
        return
    print(zoo_table(results))
    if int8_table(results):
        print(int8_table(results))
    print(summary(results))


if __name__ == "__main__":
    main()
