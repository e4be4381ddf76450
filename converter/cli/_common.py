"""What every subcommand shares: -v/-q, quiet TensorFlow logs, one-line errors with distinct exit codes."""
from __future__ import annotations

import sys
import traceback
from typing import Any, Callable, TypeVar

import click

from converter.errors import CrossportError
from converter.frameworks import quiet_frameworks

__all__ = ["quiet_frameworks", "run_guarded", "verbosity_options"]  # quiet_frameworks: the old import path

F = TypeVar("F", bound=Callable[..., Any])


def verbosity_options(func: F) -> F:
    func = click.option("-v", "--verbose", is_flag=True, help="Show detail, and tracebacks on errors.")(func)
    func = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors and the result.")(func)
    return func


def run_guarded(verbose: bool, body: Callable[[], int]) -> None:
    """Run a command body; map errors to one line on stderr and a documented exit code."""
    if not verbose:
        import warnings

        warnings.filterwarnings("ignore")
    try:
        code = body()
    except CrossportError as err:
        if verbose:
            traceback.print_exc()
        click.echo(f"crossport: {err.kind}: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("crossport: interrupted; nothing was written", err=True)
        sys.exit(130)
    except click.exceptions.Exit:
        raise
    except click.ClickException:
        raise
    except Exception as err:  # noqa: BLE001 - last line of defence, the user still gets one line
        if verbose:
            traceback.print_exc()
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        click.echo(
            f"crossport: internal error: {type(err).__name__}: {msg} (rerun with -v for the traceback)", err=True
        )
        sys.exit(70)
    sys.exit(code)
