"""What every subcommand shares: -v/-q, quiet TensorFlow logs, one-line errors with distinct exit codes."""
from __future__ import annotations

import functools
import os
import sys
import traceback
from typing import Any, Callable, TypeVar

import click

from converter.errors import CrossportError

F = TypeVar("F", bound=Callable[..., Any])


def quiet_frameworks() -> None:
    """Silence TensorFlow's C++ logging and oneDNN notices before TF is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    _private_keras_home()


def _private_keras_home() -> None:
    """Keras writes ``~/.keras/keras.json`` on first import when it is missing: a write outside the output path
    and the temp dir. Without a user config (or KERAS_HOME), point Keras at a private temp dir removed at exit; an
    existing user config is read as before (Keras writes nothing then)."""
    if "KERAS_HOME" in os.environ:
        return
    home = os.path.expanduser("~")
    if os.path.exists(os.path.join(home, ".keras", "keras.json")):
        return
    import atexit
    import shutil
    import tempfile

    keras_home = tempfile.mkdtemp(prefix="crossport-keras-home-")
    os.environ["KERAS_HOME"] = keras_home
    atexit.register(shutil.rmtree, keras_home, True)


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
