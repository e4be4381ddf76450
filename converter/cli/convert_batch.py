"""``crossport convert`` with several sources or targets: each item's report as it ends, then one summary line
per item; ``--json`` / ``--report`` give one JSON document listing every item."""
from __future__ import annotations

import json
import traceback
from pathlib import Path
from typing import Any, Callable

import click

from converter.conversion.batch import BatchItem, BatchOutcome, convert_batch, exit_code
from converter.conversion.job import ConvertOptions


def run_batch(sources: tuple[str, ...], to: tuple[str, ...], options: ConvertOptions,
              progress: Callable[[str], None], *, verbose: bool, quiet: bool, as_json: bool) -> int:
    from dataclasses import replace

    outcomes: list[BatchOutcome] = []

    def announce(outcome: BatchOutcome) -> None:
        outcomes.append(outcome)
        if outcome.exception is not None and verbose:
            traceback.print_exception(outcome.exception)
        if as_json:
            return
        if outcome.result is not None and (not quiet or not outcome.result.passed):
            click.echo(outcome.result.report.format_text())
        elif outcome.error:
            click.echo(f"crossport: {outcome.item.label}: {outcome.error}", err=True)

    def step(item: BatchItem, message: str) -> None:
        progress(f"{item.label}: {message}")

    report_path = options.report_path
    try:
        convert_batch(sources, to, replace(options, report_path=None), step, announce)
    except KeyboardInterrupt:
        written = [str(o.written) for o in outcomes if o.written]
        click.echo(f"crossport: interrupted; {len(written)} finished output(s) kept"
                   + (f": {', '.join(written)}" if written else ""), err=True)
        raise SystemExit(130) from None
    document = [_item_dict(o) for o in outcomes]
    if report_path:
        Path(report_path).write_text(json.dumps({"kind": "crossport.batch", "items": document}, indent=2) + "\n")
    if as_json:
        click.echo(json.dumps({"kind": "crossport.batch", "items": document}, indent=2))
    else:
        click.echo(summary(outcomes))
    return exit_code(outcomes)


def summary(outcomes: list[BatchOutcome]) -> str:
    ok = sum(1 for o in outcomes if o.exit_code == 0)
    lines = [f"crossport: {len(outcomes)} conversion(s): {ok} succeeded, {len(outcomes) - ok} did not"]
    for o in outcomes:
        if o.result is not None:
            report = o.result.report
            state = ("verified" if report.passed else "FAILED verification") if report.verified else "unverified"
            where = str(o.written) if o.written else "nothing written"
        else:
            state, where = o.error, "nothing written"
        lines.append(f"  {o.item.label:<40} {o.seconds:6.1f}s  {state}  {where}")
    return "\n".join(lines)


def _item_dict(outcome: BatchOutcome) -> dict[str, Any]:
    base: dict[str, Any] = {"source": outcome.item.source, "target": outcome.item.target,
                            "output": str(outcome.item.output), "exit_code": outcome.exit_code,
                            "seconds": round(outcome.seconds, 3)}
    if outcome.result is not None:
        base["report"] = outcome.result.report.to_dict()
    else:
        base["error"] = outcome.error
    return base
