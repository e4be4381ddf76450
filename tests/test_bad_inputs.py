"""The bad-input corpus: every way a user's file, path or flag can be wrong, across all four commands.

Each case is one row: the command line, the documented exit code, and the thing the one-line message must name
(a path or a flag). Every row also checks what a user would otherwise discover the hard way: no traceback without
``-v``, exactly one error line on stderr, nothing at the output path (an existing file keeps its bytes), no
``.crossport-*`` work directory left behind, and an answer within the subprocess timeout.

Rows run in-process through Click's runner (torch/TensorFlow imported once); rows marked ``proc`` run as a real
process, where what matters is process-level: C++ logging on file descriptor 2, or memory that must never be
allocated. ``python -m tests.test_bad_inputs`` prints the corpus size for the README.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60
PROGRESS = re.compile(r"^\[\s*\d+\.\d+s\] ")  # convert's progress lines: "[  0.3s] loading ..."
NOISE = re.compile(r"(?i)warn|error|exception|traceback")


@dataclass(frozen=True)
class Run:
    """One concrete invocation: arguments, where the output would go, and what the message must name."""

    args: list[str]
    names: str
    output: Path | None = None


@dataclass(frozen=True)
class Case:
    id: str
    command: str
    exit_code: int
    make: Callable[[dict[str, Path], Path], Run]  # (corpus files, this case's output dir) -> the invocation
    proc: bool = False  # run as a subprocess
    xfail: str = ""  # a known gap in code this corpus does not own: the reason, and strict xfail until fixed


def _c(id: str, command: str, exit_code: int, make: Callable[[dict[str, Path], Path], Run],
       proc: bool = False, xfail: str = "") -> Case:
    return Case(id, command, exit_code, make, proc, xfail)


def _conv(src_key: str, out_name: str, *extra: str, names: str | None = None) -> Callable[..., Run]:
    """``crossport convert <corpus file> -o <out>``; the message must name the source file unless told otherwise."""

    def make(f: dict[str, Path], out: Path) -> Run:
        dst = out / out_name
        return Run(["convert", str(f[src_key]), "-o", str(dst), *extra], names or f[src_key].name, dst)

    return make


def _calib(npz_key: str, names: str, mode: str = "int8-full") -> Callable[..., Run]:
    """``crossport convert <tiny onnx> -o a.tflite --quantize MODE --calibration <corpus npz>``."""

    def make(f: dict[str, Path], out: Path) -> Run:
        dst = out / "a.tflite"
        return Run(["convert", str(f["onnx"]), "-o", str(dst), "--quantize", mode, "--calibration",
                    str(f[npz_key])], names, dst)

    return make


SMALL_CNN = "fixtures.models:small_cnn"

CASES: list[Case] = [
    # ---- convert: paths -------------------------------------------------------------------------------------
    _c("convert-missing-source", "convert", 3,
       lambda f, o: Run(["convert", str(o / "nope.pt2"), "-o", str(o / "a.keras")], "nope.pt2", o / "a.keras")),
    _c("convert-directory-as-source", "convert", 3,
       lambda f, o: Run(["convert", str(o), "-o", str(o / "a.keras")], o.name, o / "a.keras")),
    _c("convert-file-as-output-directory", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(f["a_file"] / "a.keras")], "not_a_dir")),
    _c("convert-directory-as-output-file", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(o / "taken.keras"), "--force"], "taken.keras")),
    _c("convert-unwritable-output-dir", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(_unwritable_dir(o) / "a.keras")], "locked")),
    _c("convert-existing-output", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(_existing(o / "exists.keras"))], "--force",
                        o / "exists.keras")),
    _c("convert-unknown-source-suffix", "convert", 4, _conv("unknown_suffix", "a.keras")),
    # ---- convert: empty, truncated, random bytes --------------------------------------------------------------
    _c("convert-empty-pt2", "convert", 4, _conv("empty_pt2", "a.keras")),
    _c("convert-empty-onnx", "convert", 4, _conv("empty_onnx", "a.keras")),
    _c("convert-empty-keras", "convert", 4, _conv("empty_keras", "a.pt2")),
    _c("convert-truncated-pt2", "convert", 4, _conv("truncated_pt2", "a.keras")),
    _c("convert-truncated-onnx", "convert", 4, _conv("truncated_onnx", "a.keras")),
    _c("convert-truncated-torchscript-pt", "convert", 4, _conv("truncated_torchscript", "a.keras")),
    _c("convert-truncated-state-dict-pt", "convert", 4,
       _conv("truncated_state_dict", "a.keras", "--model-class", "x.py:Net", "--input-shape", "2x4")),
    _c("convert-truncated-keras", "convert", 4, _conv("truncated_keras", "a.pt2"), proc=True),
    _c("convert-truncated-h5", "convert", 4, _conv("truncated_h5", "a.pt2")),
    _c("convert-random-pt2", "convert", 4, _conv("random_pt2", "a.keras")),
    _c("convert-random-onnx", "convert", 4, _conv("random_onnx", "a.keras")),
    _c("convert-random-keras", "convert", 4, _conv("random_keras", "a.pt2")),
    _c("convert-random-onnx-to-pt2", "convert", 4, _conv("random_onnx", "a.pt2")),
    _c("convert-random-h5", "convert", 4, _conv("random_h5", "a.pt2")),
    _c("convert-random-pt", "convert", 4, _conv("random_pt", "a.keras", "--input-shape", "2x4")),
    # ---- convert: content the route cannot take ---------------------------------------------------------------
    _c("convert-onnx-custom-domain-op", "convert", 5, _conv("custom_op_onnx", "a.keras", names="FancyGlow")),
    _c("convert-nan-weights-pt2", "convert", 4, _conv("nan_pt2", "a.keras")),
    _c("convert-nan-weights-onnx", "convert", 4, _conv("nan_onnx", "a.keras")),
    _c("convert-nan-weights-keras", "convert", 4, _conv("nan_keras", "a.pt2")),
    # ---- convert: shapes ---------------------------------------------------------------------------------------
    _c("convert-shape-does-not-fit", "convert", 7,
       lambda f, o: Run(["convert", SMALL_CNN, "-o", str(o / "a.keras"), "--input-shape", "2x5x16x16"],
                        "--input-shape", o / "a.keras")),
    _c("convert-negative-shape", "convert", 7,
       lambda f, o: Run(["convert", SMALL_CNN, "-o", str(o / "a.keras"), "--input-shape", "2x-3x16x16"],
                        "--input-shape", o / "a.keras")),
    _c("convert-zero-shape", "convert", 7,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(o / "a.keras"), "--input-shape", "0x3x8x8"],
                        "--input-shape", o / "a.keras")),
    _c("convert-shape-larger-than-memory", "convert", 7,
       lambda f, o: Run(["convert", SMALL_CNN, "-o", str(o / "a.keras"), "--input-shape", "4096x3x4096x4096"],
                        "--input-shape", o / "a.keras"), proc=True),
    _c("convert-keras-shape-larger-than-memory", "convert", 7,
       lambda f, o: Run(["convert", str(f["keras"]), "-o", str(o / "a.pt2"), "--input-shape", "999999999999x4"],
                        "--input-shape", o / "a.pt2")),
    # ---- convert: deployment targets ---------------------------------------------------------------------------
    _c("convert-model-version-not-saved-model", "convert", 2,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(o / "a.keras"), "--model-version", "1"],
                        "--model-version", o / "a.keras")),
    _c("convert-model-version-negative", "convert", 2,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(o / "base"), "--to", "saved_model", "--model-version",
                         "-1"], "--model-version", o / "base")),
    _c("convert-model-version-inside-a-saved-model", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(_saved_model_dir(o / "plain_sm")), "--to",
                         "saved_model", "--model-version", "1"], "plain_sm", o / "plain_sm" / "saved_model.pb")),
    _c("convert-model-version-exists", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(_saved_model_dir(o / "base" / "1").parent), "--to",
                         "saved_model", "--model-version", "1"], "--force", o / "base" / "1" / "saved_model.pb")),
    _c("convert-existing-serving-base-without-version", "convert", 6,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(_saved_model_dir(o / "models" / "2").parent), "--to",
                         "saved_model"], "--model-version", o / "models" / "2" / "saved_model.pb")),
    _c("convert-pytorch-to-pt2", "convert", 5, _conv("pt2", "again.pt2", "--to", "pt2")),
    # ---- convert: quantized TFLite (--quantize, --calibration) ---------------------------------------------------
    _c("convert-quantize-unknown-mode", "convert", 2,
       _conv("onnx", "a.tflite", "--quantize", "int4", names="--quantize int4")),
    _c("convert-quantize-non-tflite-target", "convert", 2,
       _conv("onnx", "a.keras", "--quantize", "int8", names="--quantize int8")),
    _c("convert-calibration-without-int8-mode", "convert", 2,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(o / "a.tflite"), "--quantize", "dynamic",
                         "--calibration", str(f["npz_wrong_shape"])], "--calibration", o / "a.tflite")),
    _c("convert-min-top1-out-of-range", "convert", 2,
       _conv("onnx", "a.tflite", "--quantize", "int8", "--min-top1", "90", names="--min-top1")),
    _c("convert-calibration-missing", "convert", 3,
       lambda f, o: Run(["convert", str(f["onnx"]), "-o", str(o / "a.tflite"), "--quantize", "int8",
                         "--calibration", str(o / "gone.npz")], "gone.npz", o / "a.tflite")),
    _c("convert-calibration-random-bytes", "convert", 4, _calib("random_npz", "random.npz")),
    _c("convert-calibration-empty", "convert", 7, _calib("npz_empty", "empty_calib.npz")),
    _c("convert-calibration-no-samples", "convert", 7, _calib("npz_no_samples", "no_samples.npz")),
    _c("convert-calibration-wrong-names", "convert", 7, _calib("npz_wrong_name", "wrong_name.npz")),
    _c("convert-calibration-wrong-shape", "convert", 7, _calib("npz_wrong_shape", "wrong_shape.npz")),
    _c("convert-calibration-wrong-dtype", "convert", 7, _calib("npz_wrong_dtype", "wrong_dtype.npz")),
    # ---- convert: model class ---------------------------------------------------------------------------------
    _c("convert-model-class-does-not-import", "convert", 9,
       _conv("state_dict", "a.keras", "--model-class", "no_such_pkg.models:Net", "--input-shape", "2x4",
             names="no_such_pkg.models")),
    _c("convert-model-class-not-a-module", "convert", 9,
       lambda f, o: Run(["convert", str(f["state_dict"]), "-o", str(o / "a.keras"), "--input-shape", "2x4",
                         "--model-class", f"{f['net_py']}:not_a_module"], "not_a_module", o / "a.keras")),
    _c("convert-model-class-source-does-not-parse", "convert", 9,
       lambda f, o: Run(["convert", str(f["state_dict"]), "-o", str(o / "a.keras"), "--input-shape", "2x4",
                         "--model-class", f"{f['syntax_error_py']}:Net"], "broken.py", o / "a.keras")),
    _c("convert-factory-source-has-no-model", "convert", 9,
       lambda f, o: Run(["convert", f"{f['no_model_py']}:Net", "-o", str(o / "a.keras"), "--input-shape", "2x4"],
                        "'Net'", o / "a.keras")),
    # ---- verify ----------------------------------------------------------------------------------------------
    _c("verify-missing-candidate", "verify", 3,
       lambda f, o: Run(["verify", str(f["onnx"]), str(o / "missing.onnx")], "missing.onnx")),
    _c("verify-empty-onnx", "verify", 4,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["empty_onnx"])], "empty.onnx")),
    _c("verify-truncated-tflite", "verify", 4,
       lambda f, o: Run(["verify", str(f["keras"]), str(f["truncated_tflite"])], "truncated_tflite.tflite"),
       proc=True),
    _c("verify-random-tflite", "verify", 4,
       lambda f, o: Run(["verify", str(f["keras"]), str(f["random_tflite"])], "random.tflite")),
    _c("verify-truncated-keras", "verify", 4,
       lambda f, o: Run(["verify", str(f["truncated_keras"]), str(f["tflite"])], "truncated_keras.keras")),
    _c("verify-random-h5", "verify", 4,
       lambda f, o: Run(["verify", str(f["random_h5"]), str(f["tflite"])], "random.h5")),
    _c("verify-npz-wrong-names", "verify", 7,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--inputs", str(f["npz_wrong_name"])],
                        "wrong_name.npz")),
    _c("verify-npz-wrong-dtype", "verify", 7,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--inputs", str(f["npz_wrong_dtype"])],
                        "wrong_dtype.npz")),
    _c("verify-npz-wrong-shape", "verify", 7,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--inputs", str(f["npz_wrong_shape"])],
                        "wrong_shape.npz")),
    _c("verify-npz-random-bytes", "verify", 4,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--inputs", str(f["random_npz"])],
                        "random.npz")),
    _c("verify-npz-missing", "verify", 3,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--inputs", str(o / "gone.npz")], "gone.npz")),
    _c("verify-shape-does-not-fit", "verify", 7,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--input-shape", "2x5x8x8"], "--input-shape")),
    _c("verify-nan-weights", "verify", 4,
       lambda f, o: Run(["verify", str(f["nan_onnx"]), str(f["onnx"])], "nan.onnx")),
    _c("verify-golden-dir-is-a-file", "verify", 3,
       lambda f, o: Run(["verify", str(f["onnx"]), "--golden", str(f["a_file"])], "not_a_dir")),
    _c("verify-report-unwritable", "verify", 6,
       lambda f, o: Run(["verify", str(f["onnx"]), str(f["onnx"]), "--report", str(f["a_file"] / "r.json")],
                        "r.json", f["a_file"] / "r.json")),
    _c("verify-pickled-module-refused", "verify", 8,
       lambda f, o: Run(["verify", str(_pickled(o)), str(f["onnx"])], "--trust-pickle")),
    # ---- rewrite ---------------------------------------------------------------------------------------------
    _c("rewrite-missing-source", "rewrite", 3,
       lambda f, o: Run(["rewrite", str(o / "gone.py"), "--to", "keras", "-o", str(o / "k.py")], "gone.py",
                        o / "k.py")),
    _c("rewrite-source-does-not-parse", "rewrite", 4,
       lambda f, o: Run(["rewrite", str(f["syntax_error_py"]), "--to", "keras", "-o", str(o / "k.py")],
                        "broken.py", o / "k.py")),
    _c("rewrite-source-has-no-model-class", "rewrite", 9,
       lambda f, o: Run(["rewrite", str(f["no_model_py"]), "--to", "keras", "-o", str(o / "k.py"), "--verify",
                         "--input-shape", "2x4"], "helpers.py", o / "k.py")),
    _c("rewrite-empty-source-verify", "rewrite", 9,
       lambda f, o: Run(["rewrite", str(f["empty_py"]), "--to", "keras", "-o", str(o / "k.py"), "--verify",
                         "--input-shape", "2x4"], "empty.py", o / "k.py")),
    _c("rewrite-existing-output", "rewrite", 6,
       lambda f, o: Run(["rewrite", str(f["net_py"]), "--to", "keras", "-o", str(_existing(o / "k.py"))],
                        "--force", o / "k.py")),
    _c("rewrite-output-under-a-file", "rewrite", 6,
       lambda f, o: Run(["rewrite", str(f["net_py"]), "--to", "keras", "-o", str(f["a_file"] / "k.py")],
                        "k.py")),
    _c("rewrite-binary-source", "rewrite", 3,
       lambda f, o: Run(["rewrite", str(_binary_py(o)), "--to", "keras", "-o", str(o / "k.py")], "binary.py",
                        o / "k.py")),
    # ---- transfer --------------------------------------------------------------------------------------------
    _c("transfer-missing-checkpoint", "transfer", 3,
       lambda f, o: Run(_transfer(f, o, checkpoint=o / "gone.pt"), "gone.pt", o / "t.keras")),
    _c("transfer-truncated-checkpoint", "transfer", 4,
       lambda f, o: Run(_transfer(f, o, checkpoint=f["truncated_state_dict"]), "truncated_state_dict.pt",
                        o / "t.keras")),
    _c("transfer-random-checkpoint", "transfer", 4,
       lambda f, o: Run(_transfer(f, o, checkpoint=f["random_pt"]), "random.pt", o / "t.keras")),
    _c("transfer-empty-checkpoint", "transfer", 4,
       lambda f, o: Run(_transfer(f, o, checkpoint=f["empty_pt"]), "empty.pt", o / "t.keras")),
    _c("transfer-missing-original-source", "transfer", 3,
       lambda f, o: Run(_transfer(f, o, source=o / "gone.py"), "gone.py", o / "t.keras")),
    _c("transfer-keras-source-does-not-parse", "transfer", 9,
       lambda f, o: Run(_transfer(f, o, into=f["syntax_error_py"]), "broken.py", o / "t.keras")),
    _c("transfer-keras-source-has-no-class", "transfer", 9,
       lambda f, o: Run(_transfer(f, o, into=f["no_model_py"]), "helpers.py", o / "t.keras")),
    _c("transfer-existing-output", "transfer", 6,
       lambda f, o: Run(_transfer(f, o, output=_existing(o / "t.keras")), "--force", o / "t.keras")),
    _c("transfer-output-not-keras", "transfer", 6,
       lambda f, o: Run(_transfer(f, o, output=o / "t.h5"), "t.h5", o / "t.h5")),
    _c("transfer-shape-does-not-fit", "transfer", 7,
       lambda f, o: Run(_transfer(f, o, shape="2x7"), "--input-shape", o / "t.keras")),
]


def _existing(path: Path) -> Path:
    path.write_bytes(b"the user's own file")
    return path


def _saved_model_dir(path: Path) -> Path:
    """A directory that looks like a SavedModel to a reader (its own saved_model.pb)."""
    path.mkdir(parents=True)
    (path / "saved_model.pb").write_bytes(b"the user's own model")
    return path


def _unwritable_dir(out: Path) -> Path:
    """A directory nobody can create files in. Root ignores permission bits, so fall back to a pseudo-filesystem
    that refuses new files, named through a symlink called ``locked`` so the message can be checked."""
    locked = out / "locked"
    if os.geteuid() != 0:
        locked.mkdir()
        locked.chmod(0o500)
    else:
        locked.symlink_to("/proc/self")
    return locked


def _pickled(out: Path) -> Path:
    import torch

    path = out / "whole_module.pt"
    torch.save(torch.nn.Linear(3, 3), str(path))
    return path


def _binary_py(out: Path) -> Path:
    path = out / "binary.py"
    path.write_bytes(bytes(range(256)) * 4)
    return path


def _transfer(f: dict[str, Path], out: Path, *, checkpoint: Path | None = None, into: Path | None = None,
              source: Path | None = None, output: Path | None = None, shape: str = "2x4") -> list[str]:
    return ["transfer", str(checkpoint or f["state_dict"]), "--into", f"{into or f['keras_py']}:Net",
            "--source", f"{source or f['net_py']}:Net", "-o", str(output or out / "t.keras"),
            "--input-shape", shape]


# ---- the harness --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from fixtures.bad_inputs import write_corpus

    return write_corpus(tmp_path_factory.mktemp("bad_inputs"))


def _snapshot(*dirs: Path) -> dict[Path, bytes | None]:
    """Every path under ``dirs`` with its bytes (symlinks are not followed: one row points into /proc)."""
    out: dict[Path, bytes | None] = {}
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            for name in subdirs + files:
                p = Path(root) / name
                out[p] = p.read_bytes() if p.is_file() and not p.is_symlink() else None
    return out


_WORKDIR = re.compile(r"^crossport-[a-z0-9_]{8}$")  # conversion.job.workdir's fallback: mkdtemp(prefix="crossport-")


def _temp_strays() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).iterdir() if _WORKDIR.match(p.name)}


def _invoke(case: Case, run: Run, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    if case.proc:
        proc = subprocess.run([sys.executable, "-c", "from converter.cli import main; main()", *run.args], cwd=cwd,
                              capture_output=True, text=True, timeout=TIMEOUT_S,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        return proc.returncode, proc.stdout, proc.stderr
    from click.testing import CliRunner

    from converter.cli import main

    monkeypatch.chdir(cwd)
    monkeypatch.syspath_prepend(str(REPO))
    result = CliRunner().invoke(main, run.args, catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        tb = "".join(traceback.format_exception(result.exception))
        return 99, result.stdout, f"uncaught exception (Traceback):\n{tb}"
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(strict=True, reason=c.xfail))
                                  if c.xfail else c for c in CASES], ids=[c.id for c in CASES])
def test_bad_input(case: Case, corpus: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "taken.keras").mkdir()  # for the directory-where-a-file-is-expected row
    run = case.make(corpus, out)
    before = _snapshot(corpus["a_file"].parent, out)
    strays_before = _temp_strays()
    code, stdout, stderr = _invoke(case, run, out, monkeypatch)

    problems = []
    if code != case.exit_code:
        problems.append(f"exit {code}, documented {case.exit_code}")
    if "Traceback" in stdout + stderr:
        problems.append("traceback without -v")
    # The error is one line, the last one; before it only progress/summary lines, no warnings or other noise.
    lines = [line for line in stderr.splitlines() if line.strip() and not PROGRESS.match(line)]
    errors = [line for line in lines if line.startswith("crossport: ")]
    noise = [line for line in lines[:-1] if NOISE.search(line)]
    if len(errors) != 1 or lines[-1] != errors[0]:
        problems.append(f"want one 'crossport: ...' line, last on stderr; got {len(errors)}")
    elif run.names not in errors[0]:
        problems.append(f"message does not name {run.names!r}")
    if noise:
        problems.append(f"noise on stderr: {noise[:2]}")
    if run.output is not None and run.output in before:
        if run.output.is_file() and run.output.read_bytes() != before[run.output]:
            problems.append(f"{run.output.name} was modified")
    elif run.output is not None and (run.output.exists() or run.output.is_symlink()):
        problems.append(f"partial output left at {run.output.name}")
    after = _snapshot(corpus["a_file"].parent, out)
    created = sorted(str(p.relative_to(p.parents[1])) for p in set(after) - set(before))
    if created:
        problems.append(f"files left behind: {created[:5]}")
    changed = sorted(p.name for p in before if p in after and before[p] != after[p])
    if changed:
        problems.append(f"inputs modified: {changed}")
    strays = _temp_strays() - strays_before
    if strays:
        problems.append(f"temp dirs left in {tempfile.gettempdir()}: {sorted(strays)}")
    assert not problems, f"{case.id}: " + "; ".join(problems) + f"\n--- stderr:\n{stderr[-1500:]}\n--- stdout:\n{stdout[-600:]}"


def test_memory_budget_refuses_before_allocating(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shape that fits the per-array cap but not the machine: refused from arithmetic, nothing allocated."""
    import tracemalloc

    from converter.errors import ShapeError
    from converter.parity import inputs

    monkeypatch.setattr(inputs, "available_memory", lambda: 64 * 2**20)
    spec = inputs.InputSpec("x", (64, 3, 128, 128))  # 12 MiB per array, ~200 MiB for 2 sets held 8x
    tracemalloc.start()
    try:
        with pytest.raises(ShapeError, match="--input-shape x=64x3x128x128.*refusing to allocate"):
            inputs.make_input_sets([spec], seed=0, dynamic_batch=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"allocated {peak} bytes before refusing"
    monkeypatch.setattr(inputs, "available_memory", lambda: 64 * 2**30)
    assert len(inputs.make_input_sets([inputs.InputSpec("x", (2, 3, 8, 8))], seed=0)) == 2


def test_corpus_is_large_distinct_and_covers_every_command() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30
    assert {c.command for c in CASES} == {"convert", "verify", "rewrite", "transfer"}
    from converter.errors import EXIT_CODES

    assert all(c.exit_code in EXIT_CODES for c in CASES)


def corpus_size() -> int:
    """The number the README states."""
    return len(CASES)


if __name__ == "__main__":
    print(corpus_size())
