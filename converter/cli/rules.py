"""``crossport rules``: list the source-rewriting rules and what each translates."""
from __future__ import annotations

import click

from converter.cli._common import run_guarded, verbosity_options


@click.command("rules", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--to", "to", type=click.Choice(["keras", "torch"]), default="keras", show_default=True,
              help="Direction: PyTorch -> Keras 3 rules, or Keras -> PyTorch rules.")
@click.option("--examples", is_flag=True, help="Also print each rule's before/after examples.")
@verbosity_options
def command(to: str, examples: bool, verbose: bool, quiet: bool) -> None:
    """List rewrite rules (id and description), in the order they apply."""

    def body() -> int:
        from rules import discover_rules

        found = discover_rules(to)
        width = max(len(r.id) for r in found)
        for rule in found:
            click.echo(f"{rule.id:<{width}}  {rule.description}")
            if examples:
                for ex in rule.EXAMPLES:
                    click.echo(f"  --- before ({ex.layout})\n" + _indent(ex.before))
                    click.echo("  --- after\n" + _indent(ex.after if ex.after is not None else "(unchanged)"))
        if not quiet:
            click.echo(f"{len(found)} rules", err=True)
        return 0

    run_guarded(verbose, body)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())
