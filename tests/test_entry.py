"""The console script as a user runs it: a fresh process, the PyTorch side in a forked worker while TensorFlow
imports, and an exit that skips the interpreter's teardown (``converter.cli.entry``, ``converter.forked``).

In-process tests (``CliRunner``) never take these paths: torch is already imported there, so ``can_fork`` is
false, and ``main`` is the plain Click group.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ENTRY = [sys.executable, "-c", "from converter.cli import entry; entry()"]


def _run(args: list[str], tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    private_tmp = tmp / "tmpdir"
    private_tmp.mkdir(exist_ok=True)
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(private_tmp), **env}
    full_env.pop("KERAS_HOME", None)  # the command makes (and must remove) its own
    return subprocess.run([*ENTRY, *args], cwd=tmp, env=full_env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("no_fork", ["0", "1"])
def test_convert_through_the_console_entry(saved_sources: dict[str, Path], tmp_path: Path, no_fork: str) -> None:
    out = tmp_path / "m.keras"
    proc = _run(["convert", str(saved_sources["pt2"]), "-o", str(out), "--report", "r.json"], tmp_path,
                CROSSPORT_NO_FORK=no_fork)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and out.is_file() and Path(f"{out}.crossport.json").is_file()
    overlapped = [k for k in report["timings_s"] if k.endswith("(overlapped)")]
    # with a worker, the parent imports TensorFlow and then what follows the export (ONNX, ORT, the builder)
    assert overlapped == ([] if no_fork == "1" else ["import-tensorflow (overlapped)", "import-builder (overlapped)"])
    # the reference outputs came back from the worker: every input set was compared end to end
    end_to_end = report["hops"][-1]
    assert len(end_to_end["input_sets"]) == len(report["input_sets"]) >= 2
    # atexit still ran before os._exit: the temporary KERAS_HOME and the work dirs are gone
    assert list((tmp_path / "tmpdir").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras", "m.keras.crossport.json", "r.json", "tmpdir"]


def test_errors_raised_in_the_worker_keep_their_exit_code(saved_sources: dict[str, Path], tmp_path: Path) -> None:
    """A shape that does not fit fails inside the forked worker; the parent reports it as crossport would in one
    process: one line, exit 7, no traceback, nothing written."""
    proc = _run(["convert", str(saved_sources["state_dict"]), "--model-class", "fixtures.models:SmallCNN",
                 "--input-shape", "1x5x16x16", "-o", "m.keras"], tmp_path)
    assert proc.returncode == 7, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("crossport:")]
    assert len(lines) == 1 and "does not run on inputs of shape" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "[worker]" not in proc.stderr
    assert not (tmp_path / "m.keras").exists()
    assert list((tmp_path / "tmpdir").iterdir()) == []


def test_verbose_shows_the_workers_traceback(saved_sources: dict[str, Path], tmp_path: Path) -> None:
    proc = _run(["convert", str(saved_sources["state_dict"]), "--model-class", "fixtures.models:SmallCNN",
                 "--input-shape", "1x5x16x16", "-o", "m.keras", "-v"], tmp_path)
    assert proc.returncode == 7
    assert "[worker] Traceback" in proc.stderr


def test_entry_exit_codes_without_frameworks(tmp_path: Path) -> None:
    """Commands that never import a framework take the normal exit; codes are the documented ones."""
    assert _run(["--help"], tmp_path).returncode == 0
    proc = _run(["convert", "missing.pt2", "-o", "x.keras"], tmp_path)
    assert proc.returncode == 3 and proc.stderr.count("crossport:") == 1


def test_a_model_returning_a_non_tensor_is_named_unsupported(tmp_path: Path) -> None:
    """Dicts and ModelOutputs of tensors convert (named outputs); a string among the outputs cannot."""
    (tmp_path / "dict_model.py").write_text(
        "import torch\n\n\nclass D(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = torch.nn.Linear(4, 2)\n\n    def forward(self, x):\n"
        "        return {'a': self.lin(x), 'label': 'cat'}\n")
    proc = _run(["convert", "dict_model:D", "--input-shape", "2x4", "-o", "d.keras"], tmp_path,
                PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    assert proc.returncode == 5, proc.stderr
    assert "returns str at output 'label'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "d.keras").exists()


@pytest.mark.parametrize("console", [True, False])
def test_framework_imports_are_frozen_only_in_the_console_script(console: bool, tmp_path: Path) -> None:
    """``memory.settle_imports`` / ``importing_frameworks``: in the console script the collector does not run while
    TensorFlow/Keras import, then stops walking the frameworks' objects (``gc.freeze``) and is on again; a library
    caller's process keeps its collector as it was."""
    code = ("import gc, sys; from converter import frameworks, memory\n"
            + ("memory.process_ends_with_command()\n" if console else "")
            + "full = []; gc.callbacks.append(lambda phase, info: full.append(1) if phase == 'start' "
              "and info['generation'] == 2 else None)\n"
            + "frameworks.keras(); frozen = gc.get_freeze_count(); frameworks.keras()\n"
            + "print(len(full), int(gc.isenabled()), frozen, gc.get_freeze_count())")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    collections, enabled, frozen, after_second_call = (int(n) for n in proc.stdout.split()[-4:])
    assert enabled == 1
    if console:
        assert collections == 0
        assert frozen > 100_000 and after_second_call == frozen  # once, right after the import
    else:
        assert collections > 0
        assert frozen == after_second_call == 0


def test_nested_framework_imports_freeze_once_at_the_outermost(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import types

    from converter import memory

    monkeypatch.setattr(memory, "_FREEZE_AFTER_IMPORTS", True)
    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(gc.isenabled()))
    monkeypatch.delitem(sys.modules, "_crossport_imported_here", raising=False)
    assert gc.isenabled()
    try:
        with memory.importing_frameworks():
            with memory.importing_frameworks():
                assert not gc.isenabled()
                monkeypatch.setitem(sys.modules, "_crossport_imported_here", types.ModuleType("x"))
            assert not gc.isenabled() and frozen == []
        assert gc.isenabled() and frozen == [False]
        with memory.importing_frameworks():  # imports nothing new (the next file of a batch): nothing frozen
            assert not gc.isenabled()
        assert gc.isenabled() and frozen == [False]
        gc.disable()  # a caller that turned collection off keeps it off, and nothing is frozen for it
        with memory.importing_frameworks():
            monkeypatch.setitem(sys.modules, "_crossport_imported_too", types.ModuleType("y"))
        assert not gc.isenabled() and frozen == [False]
    finally:
        gc.enable()
