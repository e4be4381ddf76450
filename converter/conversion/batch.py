"""Several sources and targets in one invocation (``crossport convert a.pt2 b.pt2 -o out/ --to keras --to tflite``).

The frameworks are imported once, and each source is loaded, exported and checked once for all of its targets
(``job.SourceSession``). Every output is planned first -- and refused if it would clobber a file or collide with
another -- so a batch never stops half-way for a reason known at the start; an item that fails later does not stop
the others, and each verified output is published as soon as it is done.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from converter.conversion.job import (TARGET_DEFAULT_SUFFIX, ConversionResult, ConvertOptions, ProgressFn,
                                   SourceSession, check_quantization, resolve_output, resolve_target,
                                   source_stem, workdir)
from converter.errors import CrossportError, OutputError, UsageError


@dataclass(frozen=True)
class BatchItem:
    source: str
    target: str
    output: Path

    @property
    def label(self) -> str:
        return f"{self.source} -> {self.target}"


@dataclass(frozen=True)
class BatchOutcome:
    """One item's result, or the error that stopped it (the batch goes on)."""

    item: BatchItem
    result: ConversionResult | None = None
    error: str = ""  # "kind: message", as the single-item command prints it
    exit_code: int = 0  # 0 verified or unverified by choice, 1 verification failed, else the error's exit code
    seconds: float = 0.0
    exception: BaseException | None = None  # for a traceback under -v

    @property
    def written(self) -> Path | None:
        return self.result.artifact if self.result is not None else None


def targets_of(options: ConvertOptions, to: Sequence[str]) -> tuple[str, ...]:
    """The distinct targets in the order given (``torch`` is ``pt2``), ONNX last: its artifact is the shared export
    itself, moved into place, which the other targets of the same source still read."""
    if not to:  # -o names a directory here: its suffix says nothing about the target
        raise UsageError("several sources: pass --to (once per target); -o names the output directory")
    resolved: list[str] = []
    for t in to:
        target = resolve_target(replace(options, to=t))
        target = "pt2" if target == "torch" else target
        if target not in resolved:
            resolved.append(target)
    return tuple(sorted(resolved, key=lambda t: t == "onnx"))


def plan(sources: Sequence[str], targets: Sequence[str], options: ConvertOptions) -> tuple[BatchItem, ...]:
    """Every (source, target) with its output ``DIR/<source stem><target suffix>``; ``DIR`` is ``-o`` (a directory,
    made if only it is missing) or the current directory. Refuses up front what the single command refuses per
    output (an existing file without --force, an unwritable directory) and two items wanting one path."""
    if not sources:
        raise UsageError("no source given")
    for flag, value in (("--emit-source", options.emit_source), ("--model-version", options.model_version)):
        if value is not None:
            raise UsageError(f"{flag} names one output; convert one source to one target with it")
    for target in targets:  # e.g. --quantize with a non-TFLite --to: refused for the batch, before any work
        check_quantization(options, target)
    out_dir = Path(options.output) if options.output else Path.cwd()
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file; with several sources or targets -o names a directory")
    if not out_dir.exists() and not (out_dir.parent if str(out_dir.parent) else Path(".")).is_dir():
        raise OutputError(f"{out_dir.parent}: output directory does not exist")
    items: list[BatchItem] = []
    taken: dict[Path, str] = {}
    for source in dict.fromkeys(sources):
        for target in targets:
            path = out_dir / f"{source_stem(source)}{TARGET_DEFAULT_SUFFIX[target]}"
            if path in taken:
                raise UsageError(f"{taken[path]} and {source} would both be written to {path}; convert them in "
                                 "separate runs (or rename one)")
            taken[path] = source
            items.append(BatchItem(source, target, path))
    if out_dir.exists():  # a directory made by this run is empty: nothing there to clobber
        for item in items:
            resolve_output(item.source, item.target, replace(options, to=item.target, output=str(item.output)))
    return tuple(items)


def convert_batch(sources: Sequence[str], to: Sequence[str], options: ConvertOptions,
                  progress: Callable[[BatchItem, str], None] | None = None,
                  on_outcome: Callable[[BatchOutcome], None] | None = None) -> tuple[BatchOutcome, ...]:
    """Convert every source to every target; ``on_outcome`` hears about each item as it ends.
    ``KeyboardInterrupt`` stops the batch: outputs already published stay (each one verified and complete)."""
    items = plan(sources, targets_of(options, to), options)
    out_dir = items[0].output.parent
    made_dir = not out_dir.exists()
    if made_dir:
        try:
            out_dir.mkdir()
        except OSError as err:
            raise OutputError(f"{out_dir}: cannot create the output directory ({err.strerror or err})") from err
    outcomes: list[BatchOutcome] = []
    try:
        for source in dict.fromkeys(i.source for i in items):
            mine = [i for i in items if i.source == source]
            with workdir(out_dir) as tmp:
                session = SourceSession(tmp, tuple(i.target for i in mine))
                for item in mine:
                    step: ProgressFn | None = (lambda m, it=item: progress(it, m)) if progress else None
                    outcome = _one(item, options, step, session)
                    outcomes.append(outcome)
                    if on_outcome is not None:
                        on_outcome(outcome)
    finally:
        if made_dir and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # nothing was written: leave no trace
    return tuple(outcomes)


def _one(item: BatchItem, options: ConvertOptions, progress: ProgressFn | None,
         session: SourceSession) -> BatchOutcome:
    from converter.conversion import run_one

    opts = replace(options, to=item.target, output=str(item.output), report_path=None)
    t0 = time.perf_counter()
    try:
        result = run_one(item.source, opts, progress, session)
    except CrossportError as err:
        return BatchOutcome(item, None, f"{err.kind}: {err}", err.exit_code, time.perf_counter() - t0, err)
    except Exception as err:  # noqa: BLE001 - one item's bug must not cost the user the others
        from converter.errors import first_line

        return BatchOutcome(item, None, f"internal error: {type(err).__name__}: {first_line(err)}", 70,
                            time.perf_counter() - t0, err)
    code = 0 if result.passed or not options.verify else 1
    return BatchOutcome(item, result, "", code, time.perf_counter() - t0)


def exit_code(outcomes: Sequence[BatchOutcome]) -> int:
    """0 when every item succeeded, else the first failing item's code (1 verification failed, or the error's)."""
    return next((o.exit_code for o in outcomes if o.exit_code), 0)
