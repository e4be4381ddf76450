"""Loading a model is not a licence to run its code; paths are data, never shell.

A hostile ``.pt`` (a pickle whose ``__reduce__`` would create a marker file) and a hostile ``.keras`` (a Lambda
layer that would create one) are refused by every command that reads them, with exit 8 and one line naming the
flag that would allow it; the marker never appears. Control tests load the same files the unsafe way and watch the
marker appear, so the refusal tests cannot pass merely because the payload is broken.

``transfer`` reads checkpoints but never ``.keras`` files (it writes them), so it is tested with the pickle only.
"""
from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]


class _Touch:
    """Unpickling this calls ``pathlib.Path.touch(marker)``: any code could run in its place."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


class _Shell:
    """Unpickling this runs a shell command through ``os.system``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.system, (f"touch '{self.marker}'",))


def _evil_pt(path: Path, marker: Path, kind: str) -> Path:
    """``zip``: ``torch.save`` of a dict holding the payload beside a real tensor (looks like a checkpoint);
    ``legacy``: a bare pickle stream with a ``.pt`` suffix."""
    import torch

    if kind == "zip":
        torch.save({"fc.weight": torch.zeros(3, 4), "fc.bias": _Touch(marker)}, str(path))
    else:
        path.write_bytes(pickle.dumps({"fc.weight": [0.0], "payload": _Shell(marker)}, protocol=2))
    return path


def _evil_keras(path: Path, marker: Path) -> Path:
    """A functional model whose Lambda touches ``marker``: Keras stores the lambda's bytecode in the file and
    runs it when it rebuilds the model. Building it here runs it once too, so the marker is removed after."""
    from converter.frameworks import keras

    k = keras()
    fn = eval(f"lambda x: (__import__('pathlib').Path({str(marker)!r}).touch(), x)[1]")  # noqa: S307 - test payload
    inp = k.Input((4,), name="x")
    out = k.layers.Dense(3, name="fc")(k.layers.Lambda(fn, name="evil")(inp))
    k.Model(inp, out).save(str(path))
    marker.unlink(missing_ok=True)
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fixtures.bad_inputs import KERAS_NET, TORCH_NET, tiny_onnx

    d = tmp_path_factory.mktemp("security")
    f = {"onnx": tiny_onnx(d / "good.onnx"), "net_py": d / "net.py", "keras_py": d / "net_keras.py",
         "markers": d / "markers"}
    f["net_py"].write_text(TORCH_NET)
    f["keras_py"].write_text(KERAS_NET)
    f["markers"].mkdir()
    for kind in ("zip", "legacy"):
        f[f"pt_{kind}"] = _evil_pt(d / f"evil_{kind}.pt", f["markers"] / f"pt_{kind}", kind)
    f["keras"] = _evil_keras(d / "evil.keras", f["markers"] / "keras")
    return f


def _cli(args: list[str], cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    from converter.cli import main

    monkeypatch.chdir(cwd)
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    return result.exit_code, result.stderr


def _argv(command: str, evil: Path, f: dict[str, Path], out: Path) -> list[str]:
    if command == "convert":
        target = out / ("m.pt2" if evil.suffix == ".keras" else "m.keras")
        return ["convert", str(evil), "-o", str(target), "--input-shape", "2x4", "--model-class", f"{f['net_py']}:Net"]
    if command == "verify":
        return ["verify", str(evil), str(f["onnx"]), "--input-shape", "2x3x8x8"]
    return ["transfer", str(evil), "--into", f"{f['keras_py']}:Net", "--source", f"{f['net_py']}:Net",
            "-o", str(out / "t.keras"), "--input-shape", "2x4"]


def _assert_refused(code: int, stderr: str, marker: Path, out: Path) -> str:
    assert code == 8, stderr[-800:]
    lines = [line for line in stderr.splitlines() if line.startswith("crossport: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-800:]
    assert not marker.exists(), "the payload ran"
    assert not list(out.iterdir()), "a refused load wrote something"
    return lines[0]


PICKLE_CASES = [(c, k) for c in ("convert", "verify", "transfer") for k in ("zip", "legacy")]


@pytest.mark.parametrize("command,kind", PICKLE_CASES, ids=[f"{c}-{k}" for c, k in PICKLE_CASES])
def test_malicious_pickle_is_refused(command: str, kind: str, corpus: dict[str, Path], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    marker = corpus["markers"] / f"pt_{kind}"
    code, stderr = _cli(_argv(command, corpus[f"pt_{kind}"], corpus, tmp_path), tmp_path, monkeypatch)
    line = _assert_refused(code, stderr, marker, tmp_path)
    assert corpus[f"pt_{kind}"].name in line


@pytest.mark.parametrize("command", ["convert", "verify", "transfer"])
def test_pickle_refusal_names_the_trust_flag(command: str, corpus: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    code, stderr = _cli(_argv(command, corpus["pt_zip"], corpus, tmp_path), tmp_path, monkeypatch)
    line = _assert_refused(code, stderr, corpus["markers"] / "pt_zip", tmp_path)
    assert "--trust-pickle" in line


@pytest.mark.parametrize("command", ["convert", "verify"])
def test_keras_lambda_is_refused(command: str, corpus: dict[str, Path], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    code, stderr = _cli(_argv(command, corpus["keras"], corpus, tmp_path), tmp_path, monkeypatch)
    line = _assert_refused(code, stderr, corpus["markers"] / "keras", tmp_path)
    assert "--trust-code" in line and "evil.keras" in line


def test_controls_the_payloads_do_run_when_trusted(corpus: dict[str, Path], tmp_path: Path) -> None:
    """Loading the same files the unsafe way creates the markers: the refusals above are real refusals."""
    import torch

    from converter.frameworks import keras

    for kind in ("zip", "legacy"):
        marker = tmp_path / f"pt_{kind}"
        evil = _evil_pt(tmp_path / f"control_{kind}.pt", marker, kind)
        try:
            torch.load(str(evil), weights_only=False)
        except Exception:  # noqa: BLE001 - os.system's return value is not a tensor; the payload already ran
            pass
        assert marker.exists(), kind
    marker = tmp_path / "keras"
    evil = _evil_keras(tmp_path / "control.keras", marker)
    assert not marker.exists()
    keras().models.load_model(str(evil), safe_mode=False)
    assert marker.exists()


# ---- paths are data ----------------------------------------------------------------------------------------

HOSTILE = "we ird; $(touch pwned) `touch pwned2` & name"


def test_hostile_paths_are_used_as_given(tmp_path: Path) -> None:
    """A real process with a private HOME and TMPDIR: the conversion reads and writes exactly the paths given, no
    shell interprets them, and nothing is written anywhere but the output (its manifest beside it) and the temp
    dir, which is left empty."""
    from fixtures.bad_inputs import tiny_onnx

    src_dir = tmp_path / HOSTILE
    out_dir = tmp_path / f"out {HOSTILE}"
    home, tmpdir, cwd = tmp_path / "home", tmp_path / "tmp", tmp_path / "cwd"
    for d in (src_dir, out_dir, home, tmpdir, cwd):
        d.mkdir()
    src = tiny_onnx(src_dir / "model $(touch pwned3); x.onnx")
    out = out_dir / "m; $(touch pwned4).keras"
    before = _tree(tmp_path)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmpdir), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", "from converter.cli import main; main()", "convert", str(src),
                           "-o", str(out), "-q"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert out.is_file()
    created = sorted(str(p.relative_to(tmp_path)) for p in set(_tree(tmp_path)) - set(before))
    allowed = {str(out.relative_to(tmp_path)), f"{out.relative_to(tmp_path)}.crossport.json"}
    assert set(created) - allowed == set(), f"writes outside the output: {sorted(set(created) - allowed)}"
    assert not list(tmpdir.iterdir())
    assert not [p for p in tmp_path.rglob("pwned*")]
    assert not list(Path.cwd().glob("pwned*")) and not list(REPO.glob("pwned*"))


def _tree(root: Path) -> set[Path]:
    return {Path(r) / n for r, ds, fs in os.walk(root) for n in ds + fs}


def test_no_shell_in_crossport() -> None:
    """No code path hands a string to a shell: subprocesses take argument lists."""
    offenders = []
    for path in (REPO / "converter").rglob("*.py"):
        text = path.read_text()
        for pattern in (r"shell\s*=\s*True", r"\bos\.system\(", r"\bos\.popen\(", r"\bcommands\.getoutput"):
            if re.search(pattern, text):
                offenders.append(f"{path.relative_to(REPO)}: {pattern}")
    assert not offenders, offenders
