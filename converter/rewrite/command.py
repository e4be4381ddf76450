"""The rewrite command as a library function: rewrite, optionally verify, then write/diff/check/print."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from converter.errors import InputPathError
from converter.rewrite.files import FileOutcome, RewriteJob, rewrite_files, summary, unified_diff, write_atomic


@dataclass(frozen=True)
class RewriteCommand:
    job: RewriteJob
    verify: bool = False
    #: ``--input-shape`` values (``converter.input_shapes``), one per model input; empty: nothing is run.
    input_shapes: tuple[tuple[int, ...], ...] = ()
    class_name: str | None = None
    init_kwargs: str | None = None
    atol: float = 1e-4
    rtol: float = 1e-4
    elementwise: bool = False
    seed: int = 0
    quiet: bool = False
    verbose: bool = False


Echo = Callable[..., None]


def _with_facts(cmd: RewriteCommand, outcomes: list[FileOutcome]) -> tuple[RewriteJob, list[FileOutcome]]:
    """--to torch --input-shape: run the Keras model once (explicit opt-in) and rewrite again with its shapes."""
    from converter.rewrite.keras_probe import probe
    from converter.rewrite.loading import parse_init_kwargs
    from converter.rewrite.verify import choose_class

    if len(outcomes) != 1:
        raise InputPathError("--input-shape with --to torch works on one source file")
    outcome = outcomes[0]
    entry = choose_class(outcome.result, cmd.class_name)
    facts = probe(outcome.source, entry, cmd.input_shapes, parse_init_kwargs(cmd.init_kwargs),
                  cmd.seed)
    job = replace(cmd.job, options=replace(cmd.job.options, facts=facts))
    return job, rewrite_files(job)


def _with_traced_shapes(cmd: RewriteCommand, outcomes: list[FileOutcome]) -> tuple[RewriteJob, list[FileOutcome]]:
    """--to keras --input-shape: when channels_last left NCHW-axis TODOs (or fell back to channels_first for them),
    run the original torch model once (explicit opt-in) and rewrite again knowing each call's tensor shapes."""
    from converter.errors import ModelClassError
    from converter.rewrite.engine import LAYOUT_WORDS
    from converter.rewrite.loading import parse_init_kwargs
    from converter.rewrite.torch_trace import trace_shapes
    from converter.rewrite.verify import choose_class

    if len(outcomes) != 1:
        return cmd.job, outcomes
    result = outcomes[0].result
    fell_back = bool(result.class_layouts) or result.layout != cmd.job.options.layout
    if not fell_back and not any(w in t.why for t in result.todos for w in LAYOUT_WORDS):
        return cmd.job, outcomes
    try:
        entry = choose_class(result, cmd.class_name)
    except ModelClassError:
        return cmd.job, outcomes  # several models and no --class: nothing to trace (--verify says the same)
    from converter.frameworks import quiet_frameworks, tensorflow

    quiet_frameworks()
    tensorflow()  # torch after TF, as --verify imports them
    facts = trace_shapes(outcomes[0].source, entry, cmd.input_shapes,
                         parse_init_kwargs(cmd.init_kwargs), cmd.seed)
    if not facts:
        return cmd.job, outcomes
    job = replace(cmd.job, options=replace(cmd.job.options, facts=facts))
    again = rewrite_files(job)
    if len(again[0].result.todos) > len(result.todos):
        return cmd.job, outcomes
    return job, again


def run_rewrite(cmd: RewriteCommand, echo: Echo) -> int:
    """Returns the exit code: 0 done, 1 --check found changes/TODOs or --verify found a mismatch."""
    job = cmd.job
    if job.mode == "stdout" and (len(job.sources) != 1 or job.sources[0].is_dir()):
        if not all(p.exists() for p in job.sources):
            missing = next(p for p in job.sources if not p.exists())
            raise InputPathError(f"{missing}: no such file or directory")
        raise InputPathError("several sources: choose -o DIR, --in-place, --diff or --check")
    outcomes = rewrite_files(job)
    if job.options.to == "torch" and cmd.input_shapes:
        job, outcomes = _with_facts(cmd, outcomes)
    elif cmd.input_shapes:
        job, outcomes = _with_traced_shapes(cmd, outcomes)
    if not cmd.quiet:
        for outcome in outcomes:
            for line in summary(outcome):
                echo(line, err=True)
    if cmd.verify:
        from converter.rewrite.verify import VerifyOptions, format_report, verify_rewrite

        outcome = outcomes[0]
        verifier = verify_rewrite
        if job.options.to == "torch":
            from converter.rewrite.verify_torch import verify_keras_rewrite as verifier
        report = verifier(outcome.source, outcome.result, VerifyOptions(
            input_shapes=cmd.input_shapes, class_name=cmd.class_name,
            init_kwargs_json=cmd.init_kwargs, atol=cmd.atol, rtol=cmd.rtol, seed=cmd.seed,
            elementwise=cmd.elementwise))
        echo(format_report(report), err=job.mode == "stdout")
        if not report.passed:
            echo("crossport: verification failed; nothing was written", err=True)
            return 1
    if job.mode == "check":
        dirty = [o for o in outcomes if o.result.changed or o.result.todos]
        for o in dirty:
            why = "would change" if o.result.changed else f"{len(o.result.todos)} TODO(s) remain"
            echo(f"{o.source}: {why}", err=True)
        return 1 if dirty else 0
    if job.mode == "diff":
        for o in outcomes:
            text = unified_diff(o)
            if text:
                echo(text, nl=False)
        return 0
    if job.mode == "stdout":
        echo(outcomes[0].result.code, nl=False)
        return 0
    for o in outcomes:
        if o.target is None or (job.mode == "in_place" and not o.result.changed):
            continue
        write_atomic(o.target, o.result.code)
        if not cmd.quiet:
            echo(f"wrote {o.target}", err=True)
    return 0
