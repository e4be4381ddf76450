"""Pieces every benchmark shares: child processes with peak RSS and a timeout, machine facts, start-up timing.

Each measured step runs in its own child process so that peak memory is per step and imports are paid where a
user pays them. Peak memory (``peak_rss_mib``, the name kept for the results on record) is the larger of
``os.wait4``'s ``ru_maxrss`` (the largest single process of the step) and the largest *sum* over the step's whole
session, sampled every 0.1 s from /proc: crossport runs workers beside the main process (the PyTorch side while
TensorFlow imports, the source's runs beside the export, Keras' torch backend), and their memory adds up. The sum
is of each process's PSS (``smaps_rollup``: a page shared by n processes counts 1/n in each), so the weights a
forked child shares with its parent count once; a sum of RSS counted them in every process (ViT-B/16 to
``.tflite`` with the source's runs beside the export: 2,500 MiB summed RSS, 1,847 MiB summed PSS). Where
``smaps_rollup`` cannot be read a process's RSS stands in. The 1-minute load
average before and after is recorded with every child: on a shared 2-CPU machine it says how noisy a number is.

That probe is not free: ``smaps_rollup`` walks a process's page tables, ~35 ms per sample on a 2 GB conversion,
a quarter of one of the machine's two cores. Timed with the probe attached, ViT-B/16 -> ``.tflite`` took
10.06 / 10.09 / 10.12 s against 8.79 / 8.45 / 8.29 s without it (interleaved), and litert-torch on the same model
23.7 / 23.1 s against 22.4 / 19.2 s. So a conversion whose time is reported runs twice (``run_measured``): once
with the probe, for its peak memory, then once without, for its wall time and its outputs.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CROSSPORT = VENV_BIN / "crossport"
FRAMEWORK_MODULES = ("torch", "tensorflow", "keras")


@dataclass(frozen=True)
class ChildRun:
    """How one child process went."""

    wall_s: float
    exit_code: int | None  # None when it was killed for running past its timeout
    peak_rss_mib: float
    timed_out: bool
    loadavg_1m_before: float
    loadavg_1m_after: float
    probe_wall_s: float | None = None  # ``run_measured``: the wall time of the run the memory probe watched
    cpu_s: float | None = None  # user + system CPU seconds of the child and the descendants it waited for

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_child(cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path = ROOT,
              timeout_s: float | None = None, probe: bool = True) -> ChildRun:
    """Run ``cmd`` with stdout+stderr to ``log``; wall time, exit code and peak RSS (MiB) from ``os.wait4``.
    ``probe``: also sample the session's summed PSS (see the module docstring; it slows the child down).

    The child gets its own session so a timeout can kill it *and* anything it started (onnx2tf runs onnxsim as a
    subprocess) without touching any other process."""
    load_before = os.getloadavg()[0]
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env,
                                start_new_session=True)
        timed_out = False
        tree_peak = 0
        next_sample = 0.0
        try:
            while True:
                now = time.perf_counter()
                if probe and now >= next_sample:
                    tree_peak = max(tree_peak, session_memory_bytes(proc.pid))
                    next_sample = now + 0.1
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if timeout_s is not None and time.perf_counter() - t0 > timeout_s:
                    timed_out = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    _, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:  # interrupted (Ctrl-C, SIGTERM via interruptible()): take the child group down too
            os.killpg(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            raise
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(wall_s=wall, exit_code=None if timed_out else proc.returncode,
                    peak_rss_mib=max(usage.ru_maxrss / 1024, tree_peak / 2**20), timed_out=timed_out,
                    loadavg_1m_before=load_before, loadavg_1m_after=os.getloadavg()[0],
                    cpu_s=usage.ru_utime + usage.ru_stime)


def run_measured(cmd: Sequence[str], log: Path, outputs: Sequence[Path], env: dict[str, str] | None = None,
                 cwd: Path = ROOT, timeout_s: float | None = None) -> ChildRun:
    """``cmd`` twice: with the memory probe (log ``<log>.memory.log``), then, its ``outputs`` removed, without it.
    The wall time, exit code and outputs are the second run's, the peak memory the larger of the two. ``timeout_s``
    covers both runs; a first run that timed out is not repeated (it would only time out again)."""
    probed = run_child(cmd, log.with_name(log.name + ".memory.log"), env, cwd, timeout_s, probe=True)
    if probed.timed_out:
        return replace(probed, probe_wall_s=probed.wall_s)
    for path in outputs:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    remaining = None if timeout_s is None else max(1.0, timeout_s - probed.wall_s)
    timed = run_child(cmd, log, env, cwd, remaining, probe=False)
    return replace(timed, peak_rss_mib=max(timed.peak_rss_mib, probed.peak_rss_mib), probe_wall_s=probed.wall_s)


def session_memory_bytes(sid: int) -> int:
    """Sum of the proportional set sizes (PSS) of every process in session ``sid``; a process whose
    ``smaps_rollup`` cannot be read counts its RSS (Linux /proc; 0 elsewhere)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            if int(fields[3]) != sid:  # after "pid (comm)": state ppid pgrp session ...
                continue
            total += _pss_bytes(pid) or _rss_bytes(pid, page)
        except (OSError, ValueError, IndexError):
            continue  # the process ended between listing and reading
    return total


def _pss_bytes(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _rss_bytes(pid: str, page: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * page


def interruptible() -> None:
    """Turn SIGTERM into KeyboardInterrupt so ``run_child`` kills the step it is waiting for before exiting."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def child_env() -> dict[str, str]:
    """The environment of a user with the venv activated (onnx2tf runs ``onnxsim`` by bare name)."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def machine() -> dict[str, Any]:
    """CPU, memory, versions and git state: what a reader needs to compare two results files."""
    from importlib.metadata import PackageNotFoundError, version

    mem_kib = next((int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                    if line.startswith("MemTotal:")), 0)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {}
    for pkg in ("crossport", "torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "onnxsim", "onnx2tf",
                "onnx2torch", "tf2onnx", "tensorflow", "tf_keras", "keras", "numpy", "ai-edge-litert"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=ROOT)
    return {
        "nproc": int(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or 0),
        "cpu": cpu, "memory_gib": round(mem_kib / 1024**2, 1), "platform": platform.platform(),
        "python": platform.python_version(), "versions": versions,
        "git_commit": commit.stdout.strip(), "git_dirty": bool(dirty.stdout.strip()),
    }


# ------------------------------------------------------------------------------------------------ start-up

_IMPORT_PROBE = """
import json, sys
from click.testing import CliRunner
from converter.cli import main
args = json.loads(sys.argv[1])
r = CliRunner().invoke(main, args)
print(json.dumps({"exit_code": r.exit_code, **{m: m in sys.modules for m in %r}, "onnx": "onnx" in sys.modules}))
""" % (FRAMEWORK_MODULES,)


def import_probe(args: Sequence[str]) -> dict[str, Any]:
    """Run ``crossport ARGS`` in a fresh interpreter and report which heavy frameworks got imported."""
    probe = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, json.dumps(list(args))], check=True,
                           capture_output=True, text=True, cwd=ROOT)
    return json.loads(probe.stdout.strip().splitlines()[-1])


def timed_runs(cmd: Sequence[str], repeat: int, cwd: Path = ROOT) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(list(cmd), check=True, capture_output=True, cwd=cwd)
        times.append(time.perf_counter() - t0)
    return times


def guarded(measure: Any, *args: Any) -> dict[str, Any]:
    """Run a start-up measurement; a failing command is recorded with its stderr, not allowed to end the run."""
    try:
        return measure(*args)
    except subprocess.CalledProcessError as err:
        tail = (err.stderr or b"").decode(errors="replace").strip().splitlines()
        return {"error": f"exit {err.returncode}: {tail[-1][:300] if tail else ''}", "command": " ".join(err.cmd)}


def measure_help(repeat: int = 5) -> dict[str, Any]:
    """``crossport --help`` wall time (median) and whether ``--help`` / ``convert --help`` import frameworks."""
    times = timed_runs([str(CROSSPORT), "--help"], repeat)
    return {"median_s": statistics.median(times), "runs_s": times,
            "imports": {" ".join(a): import_probe(a) for a in (["--help"], ["convert", "--help"])}}


def measure_rewrite(work: Path, lines: int = 2000, repeat: int = 3) -> dict[str, Any]:
    """``crossport rewrite`` of a generated ``lines``-line PyTorch file (the generator the rewrite tests use)."""
    sys.path.insert(0, str(ROOT / "tests" / "rewrite"))
    from tests_rewrite_support import generated_source

    src = work / "generated_model.py"
    src.write_text(generated_source(lines))
    out = work / "generated_model_keras.py"
    cmd = [str(CROSSPORT), "rewrite", str(src), "--to", "keras", "-o", str(out), "--force", "-q"]
    times = timed_runs(cmd, repeat)
    return {"lines": len(src.read_text().splitlines()), "median_s": statistics.median(times), "runs_s": times,
            "command": f"crossport rewrite generated_model.py --to keras -o out.py --force -q",
            "imports": import_probe(["rewrite", str(src), "--to", "keras", "-o", str(out), "--force", "-q"])}
