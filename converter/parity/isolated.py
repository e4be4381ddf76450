"""A runner for a deployed artifact that runs in a fresh interpreter, loaded by its own runtime.

Verification then proves what a server or device proves: the file loads with plain torch (AOTInductor) or the
ExecuTorch runtime, without crossport, Keras or TensorFlow in the process (``deployed_worker.py``). The worker
starts once, loads the artifact once and answers every ``run``, so it behaves like any other runner (repeat
calls are cheap; ``last_seconds`` is the inference time the worker measured, without the pipe).
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.layout import Layout

WORKER = Path(__file__).with_name("deployed_worker.py")
RUNTIMES = {"aoti": "torch._inductor.aoti_load_package", "executorch": "executorch.runtime"}


class ArtifactLoadError(RuntimeError):
    """The artifact did not load or run in its runtime (the message is the worker's last line)."""


@dataclass
class IsolatedRunner:
    path: Path
    runtime: str  # a key of RUNTIMES
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str = ""
    last_seconds: float = 0.0
    _proc: Any = field(default=None, repr=False)
    _log: Any = field(default=None, repr=False)  # the worker's stderr: a file, so a chatty runtime cannot block it

    def __post_init__(self) -> None:
        if not self.name:
            self.name = f"{self.runtime} (fresh process)"

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        proc = self._start()
        buf = io.BytesIO()
        np.savez(buf, **{f"in{i}": np.ascontiguousarray(f) for i, f in enumerate(feeds)})
        payload = buf.getvalue()
        try:
            proc.stdin.write(len(payload).to_bytes(8, "little") + payload)
            proc.stdin.flush()
            head = proc.stdout.read(8)
            body = proc.stdout.read(int.from_bytes(head, "little")) if len(head) == 8 else b""
        except (BrokenPipeError, OSError):
            head, body = b"", b""
        if not body:
            raise ArtifactLoadError(f"{self.runtime} could not load or run {self.path.name}: {self._stderr_tail()}")
        data = np.load(io.BytesIO(body))
        if "error" in data.files:
            raise ArtifactLoadError(f"{self.runtime} failed on inputs {[list(f.shape) for f in feeds]}: "
                                    f"{data['error']}")
        self.last_seconds = float(data["seconds"])
        n = sum(1 for k in data.files if k.startswith("out"))
        return [data[f"out{k}"] for k in range(n)]

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:  # the worker is gone already
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter teardown
            pass

    def _start(self) -> Any:
        if self._proc is None:
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            self._log = tempfile.TemporaryFile()
            self._proc = subprocess.Popen([sys.executable, "-I", str(WORKER), self.runtime, str(self.path.resolve())],
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                          env=env, cwd=str(self.path.resolve().parent))
        return self._proc

    def _stderr_tail(self) -> str:
        proc = self._proc
        if proc is None:
            return "the worker did not start"
        try:
            proc.wait(timeout=30)
            self._log.seek(0)
            lines = [l for l in self._log.read().decode(errors="replace").splitlines() if l.strip()]
        except (subprocess.TimeoutExpired, OSError, ValueError):
            lines = []
        self.close()
        return lines[-1][:300] if lines else f"the worker exited with code {proc.returncode}"


def deploy_runner(path: Path, target: str, input_layouts: tuple[Layout, ...],
                  output_layouts: tuple[Layout, ...]) -> IsolatedRunner:
    """The artifact loaded by its runtime (``aoti_load_package`` / ExecuTorch's ``Runtime``) in a fresh process
    where crossport, Keras and TensorFlow cannot be imported."""
    label = {"aoti": "aoti package", "executorch": "executorch .pte"}[target]
    return IsolatedRunner(path, target, input_layouts, output_layouts, name=f"{label} (fresh process)")
