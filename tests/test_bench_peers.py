"""The peer benchmark's plumbing (``benchmarks/peers.py``, issue 19) without running any converter or making a venv:
which pairs run, the crossport ÷ peer ratio, the README table, pip's one-line error, the recorded results file's
schema, and the CLI's refusals. The numbers in ``PAIRS`` are rows of a real run (benchmarks/results/peers.json), one
peer failure added to show how a failure renders; timings are never asserted (they live in the results file).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks.peer_venvs import _one_line
from benchmarks.peers import PEERS, RESULTS, PeerConfig, _ratio
from benchmarks.report import peers_summary, peers_table

ROOT = Path(__file__).resolve().parent.parent


def _side(wall: float, ok: bool = True, **extra: object) -> dict[str, object]:
    return {"ok": ok, "wall_s": wall, "peak_rss_mib": 1400.0, "load": [5.9, 8.4], **extra}


PAIRS = [
    {"model": "resnet18", "peer": "litert-torch", "target": "tflite",
     "crossport": _side(32.1, reason="", static_batch=False), "peer_run": _side(24.4)},
    {"model": "convnext_tiny", "peer": "nobuco", "target": "keras",
     "crossport": _side(80.0, reason="", static_batch=True),
     "peer_run": _side(0.0, ok=False, error="Exception: Unsupported op: aten.foo", load=[2.0, 3.5])},
]


def _results(pairs: list[dict[str, object]]) -> dict[str, object]:
    for p in pairs:
        p["ratio_crossport_over_peer"] = _ratio({"crossport": p["crossport"], "peer": p["peer_run"]})
    return {"benchmark": "peers", "date_utc": "2026-12-05T00:30:00Z", "command": ".venv/bin/python benchmarks/peers.py",
            "timing": "wall time of a fresh process", "total_wall_s": 600.0, "loadavg_1m": {"min": 2.0, "max": 8.4},
            "machine": {"nproc": 2, "cpu": "cpu", "memory_gib": 24.0, "git_commit": "abc1234", "git_dirty": False,
                        "versions": {"torch": "2.14.1", "tensorflow": "2.21.0", "keras": "3.15.1"}},
            "peers": {"litert-torch": {"version": "0.10.0", "installed": True, "how": "litert_torch.convert",
                                       "versions": {"litert-torch": "0.10.0"}, "install_error": ""},
                      "nobuco": {"version": "0.17.0", "installed": False, "how": "",
                                 "install_error": "ERROR: No matching distribution found for tensorflow==2.15.1"}},
            "pairs": pairs}


def test_pairs_are_the_issue_models_grouped_by_model() -> None:
    pairs = PeerConfig().pairs()
    assert pairs[:3] == [("resnet18", "litert-torch"), ("resnet18", "nobuco"), ("mobilenet_v3_small", "litert-torch")]
    assert sorted(pairs) == sorted((m, p) for p, peer in PEERS.items() for m in peer.models)
    assert len(pairs) == 9  # 5 models to .tflite with litert-torch, 4 to Keras with nobuco
    assert PeerConfig(only=("vit_b_16",)).pairs() == [("vit_b_16", "litert-torch"), ("vit_b_16", "nobuco")]
    assert ("mobilenet_v3_small", "nobuco") not in PeerConfig(peers=("nobuco",)).pairs()


def test_ratio_only_when_both_tools_succeeded() -> None:
    ok = _results([dict(p) for p in PAIRS])["pairs"]
    assert abs(ok[0]["ratio_crossport_over_peer"] - 32.1 / 24.4) < 1e-9
    assert ok[1]["ratio_crossport_over_peer"] is None


def test_table_has_a_row_per_pair_with_times_ratio_load_and_failures() -> None:
    table = peers_table(_results([dict(p) for p in PAIRS]))
    rows = [ln for ln in table.splitlines() if ln.startswith("| resnet18") or ln.startswith("| convnext")]
    assert len(rows) == 2
    assert rows[0] == "| resnet18 | litert-torch → .tflite | 32.1 | 24.4 | ×1.32 | 1400 / 1400 | 5.9–8.4 |"
    assert "80.0 (static batch)" in rows[1] and "**failed**: Exception: Unsupported op: aten.foo" in rows[1]
    assert rows[1].endswith("| — | 1400 / — | 2.0–8.4 |")


def test_a_reused_peer_number_says_when_it_was_measured() -> None:
    pair = {**PAIRS[0], "peer_date_utc": "2026-12-05T00:44:23Z"}
    row = peers_table(_results([pair])).splitlines()[2]
    assert "| 24.4 (2026-12-05 00:44) |" in row


def test_summary_says_why_a_peer_is_not_installed() -> None:
    text = peers_summary(_results([dict(p) for p in PAIRS]))
    assert "nobuco 0.17.0: not installed: ERROR: No matching distribution found for tensorflow==2.15.1" in text
    assert "commit abc1234;" in text and "load 2.0–8.4" in text


def test_pip_failure_becomes_its_error_line() -> None:
    out = ("Collecting nobuco\nWARNING: Location 'file:///opt/pypi/simple/x/' is ignored\n"
           "ERROR: Could not find a version that satisfies the requirement tensorflow==9.9\n"
           "ERROR: No matching distribution found for tensorflow==9.9\n")
    assert _one_line(out) == "ERROR: No matching distribution found for tensorflow==9.9"
    assert _one_line("") == "no output"


def test_recorded_results_follow_the_schema_and_render() -> None:
    results = json.loads(RESULTS.read_text())
    assert results["benchmark"] == "peers" and set(results["peers"]) == set(PEERS)
    assert {(p["model"], p["peer"]) for p in results["pairs"]} == set(PeerConfig().pairs())
    for pair in results["pairs"]:
        for side in (pair["crossport"], pair["peer_run"]):
            assert {"ok", "wall_s", "load", "peak_rss_mib"} <= set(side), pair["model"]
            assert side["ok"] or (side.get("reason") or side.get("error")), pair
        assert (pair["ratio_crossport_over_peer"] is None) == (not (pair["crossport"]["ok"] and pair["peer_run"]["ok"]))
    assert len([ln for ln in peers_table(results).splitlines() if ln.startswith("| ")]) == len(results["pairs"]) + 1


def test_cli_refuses_unknown_names_and_crossport_only_without_earlier_results(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "benchmarks/peers.py", *args], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    bad = run("--peers", "onnx2keras", "--output", str(tmp_path / "p.json"))
    assert bad.returncode == 1 and "unknown peer(s)/model(s) ['onnx2keras']" in bad.stderr
    again = run("--crossport-only", "--output", str(tmp_path / "p.json"))
    assert again.returncode == 1 and "--crossport-only needs an earlier" in again.stderr
    assert not (tmp_path / "p.json").exists()
