"""Virtual environments for the peer converters of ``benchmarks/peers.py``, outside the repository and reused.

The peers pin what ours cannot (nobuco needs Keras 2, i.e. TensorFlow <= 2.15 and numpy < 2; litert-torch brings
jax, torchao and its own LiteRT converter), so each gets its own venv under ``~/.cache/crossport-bench/peers/
<tool>-<version>`` (``CROSSPORT_BENCH_CACHE`` moves it). Both run the *same* torch as ours, and a CUDA torch
wheel set is ~4.4 GB: instead of installing it twice more, its files are hard-linked from our venv into one
shared layer (``torch-<version>``: torch, torchvision, triton and the NVIDIA/CUDA wheels, dist-info included, so
pip in a peer venv sees them as installed) that each peer venv puts on ``sys.path`` with a ``.pth`` file. Hard
links cost no disk and survive a reinstall of our venv (pip replaces files, it does not rewrite them).

A venv is reused only when its ``.ready`` marker exists and its ``.pth`` names the layer of our current torch; a failed install is removed and the reason (pip's last
error line) is returned, so the benchmark records it instead of crashing.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("CROSSPORT_BENCH_CACHE", Path.home() / ".cache" / "crossport-bench")) / "peers"
LAYER_DISTS = ("torch", "torchvision", "triton")
LAYER_PREFIXES = ("nvidia-", "nvidia_", "cuda-", "cuda_")
INSTALL_TIMEOUT_S = 1800.0
LAYER_PTH = "crossport_bench_torch_layer.pth"


@dataclass(frozen=True)
class PeerSpec:
    """A peer tool and what its venv needs (pip requirement strings, installed under the machine's constraints)."""

    name: str
    version: str
    requirements: tuple[str, ...]
    module: str  # imported by the runner; its version is read from the installed distribution

    @property
    def venv(self) -> Path:
        return CACHE / f"{self.name}-{self.version}"


@dataclass(frozen=True)
class PeerVenv:
    """The outcome of preparing one peer venv."""

    python: Path | None  # None when it could not be installed
    error: str  # pip's one-line reason when python is None
    install_s: float  # 0.0 when the venv was reused


def _layer_dists() -> list[object]:
    from importlib.metadata import distributions

    return [d for d in distributions() if (n := (d.metadata["Name"] or "").lower()) in LAYER_DISTS
            or n.startswith(LAYER_PREFIXES)]


def torch_layer() -> Path:
    """The shared torch layer for our torch version, hard-linked from this interpreter's site-packages."""
    from importlib.metadata import version

    layer = CACHE / f"torch-{version('torch')}"
    if (layer / ".ready").exists():
        return layer
    shutil.rmtree(layer, ignore_errors=True)
    for dist in _layer_dists():
        base = Path(dist.locate_file(""))
        for rel in dist.files or ():
            src = base / rel
            if ".." in rel.parts or not src.is_file():
                continue  # scripts in bin/ (../../bin/...) are not needed: the runner imports modules
            dst = layer / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:  # another filesystem: copy
                shutil.copy2(src, dst)
    (layer / ".ready").touch()
    return layer


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("WARNING")]
    errors = [ln for ln in lines if ln.startswith("ERROR")]
    return ((errors or lines or ["no output"])[-1])[:300]


def ensure_venv(spec: PeerSpec, python: str = sys.executable) -> PeerVenv:
    """The peer's venv, created and installed on first use; reused while its ``.ready`` marker is there."""
    import time

    venv = spec.venv
    peer_python = venv / "bin" / "python"
    t0 = time.perf_counter()
    try:
        layer = torch_layer()
        pth = next(venv.glob(f"lib/python3.*/site-packages/{LAYER_PTH}"), None)
        if (venv / ".ready").exists() and peer_python.exists() and pth and pth.read_text().strip() == str(layer):
            return PeerVenv(peer_python, "", 0.0)
        shutil.rmtree(venv, ignore_errors=True)  # absent, half-made, or made for another torch: make it again
        subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True, text=True)
        site = next((venv / "lib").glob("python3.*/site-packages"))
        (site / LAYER_PTH).write_text(f"{layer}\n")
        from importlib.metadata import version

        pins = [f"torch=={version('torch')}", f"torchvision=={version('torchvision')}"]
        proc = subprocess.run([str(peer_python), "-m", "pip", "install", "--disable-pip-version-check",
                               *spec.requirements, *pins], capture_output=True, text=True,
                              timeout=INSTALL_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"pip install {' '.join(spec.requirements)}: {_one_line(proc.stdout + proc.stderr)}")
        check = subprocess.run([str(peer_python), "-c", f"import torch, torchvision, {spec.module}"],
                               capture_output=True, text=True, timeout=600)
        if check.returncode != 0:
            raise RuntimeError(f"import {spec.module}: {_one_line(check.stderr)}")
    except (RuntimeError, subprocess.SubprocessError, OSError, StopIteration) as err:
        shutil.rmtree(venv, ignore_errors=True)  # never leave a half-installed venv to be reused
        detail = getattr(err, "stderr", None) or str(err)
        return PeerVenv(None, _one_line(detail if isinstance(detail, str) else str(err)), time.perf_counter() - t0)
    (venv / ".ready").touch()
    return PeerVenv(peer_python, "", time.perf_counter() - t0)


def installed_versions(python: Path, packages: tuple[str, ...]) -> dict[str, str | None]:
    """Versions of ``packages`` inside a peer venv (None: not installed)."""
    code = ("import json, sys\nfrom importlib.metadata import version, PackageNotFoundError\nout = {}\n"
            "for p in sys.argv[1:]:\n    try: out[p] = version(p)\n    except PackageNotFoundError: out[p] = None\n"
            "print(json.dumps(out))")
    import json

    proc = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True, timeout=120)
    return json.loads(proc.stdout) if proc.returncode == 0 else {p: None for p in packages}
