"""Which files a rewrite reads and writes, and how: new files are written to a temporary path and moved into
place, existing outputs are refused without --force, and only --in-place touches the user's sources."""
from __future__ import annotations

import difflib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from converter.errors import InputPathError, OutputError
from converter.rewrite.engine import rewrite_source
from converter.rewrite.options import RewriteOptions, RewriteResult

MODES = ("stdout", "output", "in_place", "diff", "check")


@dataclass(frozen=True)
class RewriteJob:
    sources: tuple[Path, ...]
    mode: str = "stdout"
    output: Path | None = None
    force: bool = False
    options: RewriteOptions = RewriteOptions()


@dataclass(frozen=True)
class FileOutcome:
    source: Path
    target: Path | None
    result: RewriteResult


def collect_sources(paths: tuple[Path, ...]) -> list[tuple[Path, Path]]:
    """(file, path relative to the tree it came from); directories contribute every *.py below them."""
    found: list[tuple[Path, Path]] = []
    for path in paths:
        if path.is_dir():
            for file in sorted(path.rglob("*.py")):
                if not any(part.startswith(".") for part in file.relative_to(path).parts):
                    found.append((file, file.relative_to(path)))
        elif path.is_file():
            found.append((path, Path(path.name)))
        else:
            raise InputPathError(f"{path}: no such file or directory")
    if not found:
        raise InputPathError("no Python files to rewrite")
    return found


def plan_targets(job: RewriteJob, files: list[tuple[Path, Path]]) -> list[Path | None]:
    if job.mode == "in_place":
        return [f for f, _ in files]
    if job.mode != "output":
        return [None for _ in files]
    assert job.output is not None
    single_file = len(job.sources) == 1 and job.sources[0].is_file()
    if single_file and not job.output.is_dir():
        return [job.output]
    return [job.output / rel for _, rel in files]


def check_targets(targets: list[Path | None], force: bool, sources: list[Path]) -> None:
    source_set = {s.resolve() for s in sources}
    for target in targets:
        if target is None:
            continue
        if target.resolve() in source_set:
            raise OutputError(f"{target}: refusing to overwrite a source file; use --in-place for that")
        if target.exists() and not force:
            raise OutputError(f"{target}: exists; pass --force to overwrite")


def write_atomic(target: Path, text: str) -> None:
    """Write next to the target and rename, so a reader never sees half a file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        if target.exists():
            os.chmod(tmp, target.stat().st_mode & 0o7777)  # --in-place / --force keep the file's permissions
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; a new source file gets the usual mode
        os.replace(tmp, target)
    except OSError as err:
        raise OutputError(f"{target}: cannot write: {err.strerror or err}") from None


def read_source(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputPathError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise InputPathError(f"{path}: cannot read: {err.strerror or err}") from None


def rewrite_files(job: RewriteJob) -> list[FileOutcome]:
    """Rewrite every source of ``job`` in memory (nothing is written here)."""
    files = collect_sources(job.sources)
    targets = plan_targets(job, files)
    if job.mode == "output":
        check_targets(targets, job.force, [f for f, _ in files])
    return [
        FileOutcome(src, target, rewrite_source(read_source(src), job.options, filename=str(src)))
        for (src, _), target in zip(files, targets)
    ]


def unified_diff(outcome: FileOutcome) -> str:
    name = str(outcome.source)
    return "".join(difflib.unified_diff(
        outcome.result.source.splitlines(keepends=True), outcome.result.code.splitlines(keepends=True),
        fromfile=f"a/{name}", tofile=f"b/{name}",
    ))


def summary(outcome: FileOutcome) -> list[str]:
    """Human summary: what was rewritten, every TODO with file:line, what was left alone."""
    r = outcome.result
    name = str(outcome.source)
    lines: list[str] = []
    if not r.model_classes:
        what = "Keras model (Model/Layer class, Sequential or functional builder)" if r.to == "torch" else (
            "torch nn.Module subclass")
        lines.append(f"{name}: no {what} found; nothing to rewrite")
    else:
        applied = ", ".join(f"{rule}×{n}" for rule, n in r.applied) or "nothing"
        layout = "NCHW torch from channels-last Keras" if r.to == "torch" else f"layout {r.layout}" + "".join(
            f", {cls} {other}" for cls, other in r.class_layouts)
        lines.append(f"{name}: {len(r.model_classes)} model class(es) ({', '.join(r.model_classes)}), "
                     f"{layout}; rules applied: {applied}")
    # TODO lines are lines of the rewritten code: name the file that holds it when there is one.
    where = str(outcome.target) if outcome.target is not None else f"{name} (rewritten)"
    lines += [f"{name}: {note}" for note in r.notes]
    for todo in r.todos:
        lines.append(f"{where}:{todo.line}: TODO({todo.rule_id}): {todo.why}")
    for line, what in r.not_rewritten:
        lines.append(f"{name}:{line}: not rewritten (not model code): {what}")
    return lines
