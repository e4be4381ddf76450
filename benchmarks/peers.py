"""crossport next to the peer converters (issue 19): litert-torch for ``.tflite``, nobuco for Keras, same models.

Run from the repository root (``make bench`` runs it after the zoo; ``make bench-peers`` runs only this):

    .venv/bin/python benchmarks/peers.py                          # all pairs, writes benchmarks/results/peers.json
    .venv/bin/python benchmarks/peers.py --only resnet18,vit_b_16 # these models (merged into the results file)
    .venv/bin/python benchmarks/peers.py --peers nobuco           # one peer
    .venv/bin/python benchmarks/peers.py --crossport-only         # rerun crossport's side, keep the peers' numbers
    .venv/bin/python benchmarks/report.py benchmarks/results/peers.json

Per model: the zoo's *make* stage writes the ``.pt2`` crossport converts (``benchmarks/zoo.py``: seeded, calibrated,
dynamic batch); then, back to back, each tool as a fresh process: ``crossport convert X.pt2 -o X.tflite|.keras``
(``benchmarks.zoo.convert``: verification on, its default; one ``--static-batch`` retry on failure) and the peer in
its own venv (``benchmarks/peer_runner.py``: the same model built from torchvision with the same seed and weights,
static batch 1). Each is timed as a whole process (imports + conversion + save; crossport's time also includes its
verification, the peers' does not — nobuco's own per-operation check, on by default, is included), with the
1-minute load average before and after. Each tool runs twice (``benchmarks/common.run_measured``): its peak memory
comes from a run watched by the memory probe, its time from the run after, without the probe. The peer's
model-building time is measured inside its process and subtracted (crossport reads the ready ``.pt2``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import ROOT, interruptible, machine, run_measured  # noqa: E402
from benchmarks.peer_venvs import PeerSpec, ensure_venv, installed_versions  # noqa: E402
from benchmarks.zoo import convert, run_stage, skipped  # noqa: E402
from benchmarks.zoo_models import ALL_MODELS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "peers.json"
RUNNER = Path(__file__).resolve().parent / "peer_runner.py"
DEFAULT_TIMEOUT_S = 1200.0


@dataclass(frozen=True)
class Peer:
    """A peer converter, the crossport target it is compared on, and the models it is run on."""

    spec: PeerSpec
    target: str  # zoo target name: "tflite" or "keras"
    models: tuple[str, ...]
    how: str  # how the peer is run, for the README
    packages: tuple[str, ...]  # versions recorded from its venv


PEERS: dict[str, Peer] = {
    "litert-torch": Peer(
        PeerSpec("litert-torch", "0.10.0", ("litert-torch==0.10.0",), "litert_torch"), "tflite",
        ("resnet18", "mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "vit_b_16"),
        "litert_torch.convert(module, (x,)).export(path), static batch 1 (its normal use; a dynamic batch fails)",
        ("litert-torch", "ai-edge-litert", "litert-converter", "torch", "jax", "numpy")),
    "nobuco": Peer(
        PeerSpec("nobuco", "0.17.0", ("nobuco==0.17.0", "tensorflow==2.15.1"), "nobuco"), "keras",
        ("resnet18", "efficientnet_b0", "convnext_tiny", "vit_b_16"),
        "nobuco.pytorch_to_keras(module, args=[x]) with its defaults (NHWC input, full_validation=True), "
        "keras_model.save(path.keras); batch 1. Keras 2: TensorFlow 2.15",
        ("nobuco", "tensorflow", "keras", "torch", "numpy")),
}
SUFFIX = {"tflite": ".tflite", "keras": ".keras"}


@dataclass(frozen=True)
class PeerConfig:
    """What one run does; the CLI flags map onto it."""

    peers: tuple[str, ...] = tuple(PEERS)
    only: tuple[str, ...] = ()
    crossport_only: bool = False  # keep the peers' numbers from the existing results file
    timeout_s: float = DEFAULT_TIMEOUT_S

    def pairs(self) -> list[tuple[str, str]]:
        """(model, peer) in model order, so each model is made once and its tools run back to back."""
        models = dict.fromkeys(m for p in self.peers for m in PEERS[p].models)
        return [(m, p) for m in models if not self.only or m in self.only for p in self.peers
                if m in PEERS[p].models]


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_peer(peer: Peer, python: Path, model: str, work: Path, timeout_s: float) -> dict[str, Any]:
    """The peer on one model in a fresh process of its venv's interpreter."""
    output = work / f"{model}_{peer.spec.name}{SUFFIX[peer.target]}"
    result, log = work / f"{model}_{peer.spec.name}.json", work / f"{model}_{peer.spec.name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    child = run_measured([str(python), str(RUNNER), peer.spec.name, model, str(output), str(result)], log,
                         (output, result), env, cwd=work, timeout_s=timeout_s)
    data = json.loads(result.read_text()) if result.is_file() else {}
    error = data.get("error", "")
    if child.timed_out:
        error = f"timeout after {timeout_s:.0f} s"
    elif not data:
        tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        error = f"exit {child.exit_code}: {tail[-1].strip()[:300] if tail else 'no output'}"
    build = float(data.get("build_s") or 0.0)
    return {"ok": bool(data.get("ok")) and child.exit_code == 0, "error": error,
            "wall_s": child.wall_s - build, "process_wall_s": child.wall_s, "build_s": build,
            "phases_s": data.get("phases_s", {}), "peak_rss_mib": child.peak_rss_mib,
            "probe_wall_s": child.probe_wall_s,
            "load": [child.loadavg_1m_before, child.loadavg_1m_after], "artifact_bytes": data.get("artifact_bytes"),
            "command": f"{python.parent.parent.name}/bin/python benchmarks/peer_runner.py {peer.spec.name} {model} "
                       f"{output.name} result.json"}


def dynamic_batch_check(python: Path, work: Path, timeout_s: float) -> dict[str, Any]:
    """litert-torch on ResNet-18 with a dynamic batch: why the comparison runs it with a static batch 1."""
    _log("[peers] litert-torch with a dynamic batch (resnet18)")
    mdir = work / "litert_dynamic"
    mdir.mkdir()
    variant = replace(PEERS["litert-torch"], spec=replace(PEERS["litert-torch"].spec, name="litert-torch-dynamic"))
    out = run_peer(variant, python, "resnet18", mdir, timeout_s)
    _cleanup(mdir)
    return {k: out[k] for k in ("ok", "error", "wall_s", "command")}


def crossport_side(model: str, target: str, source: Path, work: Path, timeout_s: float) -> dict[str, Any]:
    conv = convert(source, ALL_MODELS[model], target, work, time.monotonic() + timeout_s, start_static=False)
    return _crossport_dict(conv)


def _crossport_dict(conv: Any) -> dict[str, Any]:
    d = asdict(conv)
    keep = ("command", "converted", "verified", "reason", "exit_code", "static_batch", "dynamic_batch_failure",
            "wall_s", "peak_rss_mib", "load", "artifact_bytes", "max_abs_error", "rel_error", "crossport_timings_s",
            "probe_wall_s")
    return {"ok": conv.verified, **{k: d[k] for k in keep}}


def _ratio(pair: dict[str, Any]) -> float | None:
    ours, theirs = pair.get("crossport") or {}, pair.get("peer") or {}
    if ours.get("ok") and theirs.get("ok") and theirs.get("wall_s"):
        return ours["wall_s"] / theirs["wall_s"]
    return None


def prepare_peers(config: PeerConfig, previous: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each selected peer's venv (created once, reused) and versions; a peer that cannot be installed says why."""
    out: dict[str, dict[str, Any]] = {}
    for name in config.peers:
        peer = PEERS[name]
        if config.crossport_only and name in previous.get("peers", {}):
            out[name] = {**previous["peers"][name], "python": None}
            continue
        _log(f"[peers] {name} {peer.spec.version}: venv {peer.spec.venv}")
        venv = ensure_venv(peer.spec)
        out[name] = {"version": peer.spec.version, "requirements": list(peer.spec.requirements),
                     "venv": str(peer.spec.venv), "installed": venv.python is not None,
                     "install_error": venv.error, "install_s": venv.install_s, "how": peer.how, "target": peer.target,
                     "versions": installed_versions(venv.python, peer.packages) if venv.python else {},
                     "python": str(venv.python) if venv.python else None}
        if venv.error:
            _log(f"[peers] {name} not installed: {venv.error}")
    return out


def run_peers(config: PeerConfig, previous: dict[str, Any], work: Path) -> dict[str, Any]:
    started = time.monotonic()
    peers = prepare_peers(config, previous)
    old = {(p["model"], p["peer"]): p for p in previous.get("pairs", [])}
    pairs: dict[tuple[str, str], dict[str, Any]] = dict(old)
    loads: list[float] = []
    made: dict[str, Path | str] = {}
    for model, name in config.pairs():
        peer, info = PEERS[name], peers[name]
        mdir = work / model
        if model not in made:
            for done in made:  # the previous model's files (ViT-B/16: 330 MB each); logs and JSON stay
                _cleanup(work / done)
            mdir.mkdir()
            _log(f"[peers] {model}: make .pt2")
            data, _child, err = run_stage("make", model, mdir, config.timeout_s)
            made[model] = Path(data["path"]) if data else err
        source = made[model]
        ours = (crossport_side(model, peer.target, source, mdir, config.timeout_s) if isinstance(source, Path)
                else _crossport_dict(skipped(peer.target, str(source))))
        _log(f"[peers] {model}: crossport -> {peer.target}: {ours['wall_s']:.1f} s {ours['reason'] or 'verified'}")
        if config.crossport_only:
            theirs = old[(model, name)]["peer_run"] if (model, name) in old else {
                "ok": False, "error": "not run (--crossport-only, no earlier result)", "wall_s": None}
        elif not info.get("python"):
            theirs = {"ok": False, "error": f"not installed: {info.get('install_error', '')}", "wall_s": None}
        else:
            theirs = run_peer(peer, Path(info["python"]), model, mdir, config.timeout_s)
            _log(f"[peers] {model}: {name}: {theirs['wall_s']:.1f} s {theirs['error'] or 'ok'}")
        pair = {"model": model, "peer": name, "target": peer.target, "crossport": ours, "peer_run": theirs,
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if config.crossport_only and (model, name) in old:  # the peer's side is an earlier run's: say which
            pair["peer_date_utc"] = old[(model, name)].get("peer_date_utc") or old[(model, name)].get("date_utc")
        pair["ratio_crossport_over_peer"] = _ratio({"crossport": ours, "peer": theirs})
        pairs[(model, name)] = pair
        loads.extend(x for side in (ours, theirs) for x in side.get("load") or [])
    for done in made:
        _cleanup(work / done)
    lt = peers.get("litert-torch", {})
    if lt.get("python") and not config.crossport_only and config.pairs():
        peers["litert-torch"]["dynamic_batch_check"] = dynamic_batch_check(Path(lt["python"]), work,
                                                                           config.timeout_s)
    for info in peers.values():
        info.pop("python", None)
    loads = loads or [os.getloadavg()[0]]
    return {
        "benchmark": "peers",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"peers": list(config.peers), "only": list(config.only), "crossport_only": config.crossport_only,
                   "timeout_s": config.timeout_s},
        "timing": "wall time of a fresh process per tool and model: interpreter start, imports, conversion and "
                  "save; crossport's includes its verification (source vs the written file end to end on 2 input sets; ONNX Runtime only to localize a failure) and its latency timing, "
                  "the peers' does not (nobuco's default per-operation check is included); the peer's model "
                  "build (torchvision + calibration, inside its process) is subtracted. Each tool runs twice per "
                  "model: first watched by the memory probe (peak_rss_mib; its wall time is probe_wall_s), then "
                  "without it (wall_s): the probe's page-table walks slowed crossport's ViT-B/16 by ~15 %",
        "machine": machine(),
        "loadavg_1m": {"min": min(loads), "max": max(loads), "samples": loads},
        "total_wall_s": time.monotonic() - started,
        "peers": {**previous.get("peers", {}), **peers},
        "pairs": [pairs[k] for k in sorted(pairs, key=_order)],
    }


def _runs(previous: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs recorded in an earlier results file (a file from before runs were listed: its one run)."""
    if not previous or previous.get("runs"):
        return list(previous.get("runs", []))
    return [{"command": previous.get("command", ""), "date_utc": previous["date_utc"],
             "pairs": [[p["model"], p["peer"]] for p in previous["pairs"]], "loadavg_1m": previous["loadavg_1m"],
             "git_commit": previous["machine"]["git_commit"]}]


def _order(key: tuple[str, str]) -> tuple[int, int]:
    peer_order = list(PEERS)
    models = list(ALL_MODELS)
    return (peer_order.index(key[1]) if key[1] in peer_order else 99,
            models.index(key[0]) if key[0] in models else 99)


def _cleanup(mdir: Path) -> None:
    """Converted files are big (ViT-B/16: 330 MB each); keep only logs and JSON."""
    for p in mdir.iterdir():
        if p.suffix not in (".json", ".log"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated model names (default: every peer's models)")
    parser.add_argument("--peers", default=",".join(PEERS), help="comma-separated peers (default: %(default)s)")
    parser.add_argument("--crossport-only", action="store_true",
                        help="rerun crossport's side only; the peers' numbers come from the existing results file")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per tool and model, seconds")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON, merged into (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory (logs)")
    args = parser.parse_args()
    peers = tuple(p for p in args.peers.split(",") if p)
    unknown = [p for p in peers if p not in PEERS] + [m for m in args.only.split(",") if m and m not in ALL_MODELS]
    if unknown:
        raise SystemExit(f"unknown peer(s)/model(s) {unknown}; peers: {', '.join(PEERS)}")
    previous = json.loads(args.output.read_text()) if args.output.is_file() else {}
    if args.crossport_only and not previous:
        raise SystemExit(f"--crossport-only needs an earlier {args.output} with the peers' numbers")
    interruptible()
    config = PeerConfig(peers=peers, only=tuple(m for m in args.only.split(",") if m),
                        crossport_only=args.crossport_only, timeout_s=args.timeout)
    work = Path(tempfile.mkdtemp(prefix="crossport-peers-"))
    try:
        results = run_peers(config, previous, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["command"] = " ".join([".venv/bin/python", "benchmarks/peers.py", *sys.argv[1:]])
    # pairs from earlier runs are kept (--only, --crossport-only merge): every run that wrote this file is listed
    results["runs"] = [*_runs(previous), {"command": results["command"], "date_utc": results["date_utc"],
                                                   "pairs": [list(p) for p in config.pairs()],
                                                   "loadavg_1m": results["loadavg_1m"],
                                                   "git_commit": results["machine"]["git_commit"]}]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    from benchmarks.report import peers_summary, peers_table

    print(peers_table(results))
    print(peers_summary(results))
    print(f"\nwrote {args.output} in {results['total_wall_s']:.0f} s" + (f", work dir {work}" if args.keep else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
