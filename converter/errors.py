"""Errors a user can act on, each with its own exit code.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``; the traceback is shown only
with ``-v``. Library callers catch :class:`CrossportError` (or a subclass) instead of upstream exceptions.
"""
from __future__ import annotations


def first_line(err: BaseException, limit: int = 200) -> str:
    """An upstream exception as one line of a one-line message: its first non-empty line (upstream messages run to
    pages), or its type's name when it says nothing."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def described(err: BaseException, limit: int = 200) -> str:
    """``Type: first line`` -- for messages about an exception from code that is not ours (the user's model, a
    runtime), where the type says as much as the text."""
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:limit] if text else ''}"


class CrossportError(Exception):
    """Base class: a problem with the user's input or environment, not a bug in crossport."""

    exit_code: int = 10
    kind: str = "error"


class UsageError(CrossportError):
    """Options that contradict each other, the target, or name an unknown value (e.g. ``--quantize`` for a
    non-TFLite target): the CLI's usage-error exit code."""

    exit_code = 2
    kind = "usage"


class InputPathError(CrossportError):
    """A path given by the user does not exist, or is a directory where a file is expected (or the reverse)."""

    exit_code = 3
    kind = "bad path"


class ModelFileError(CrossportError):
    """A model file exists but cannot be read: unknown suffix, corrupt, truncated, wrong format."""

    exit_code = 4
    kind = "unreadable model"


class UnsupportedError(CrossportError):
    """The route cannot convert something in the model (an op, an attribute, a dtype)."""

    exit_code = 5
    kind = "unsupported"


class OutputError(CrossportError):
    """The output path exists (and --force was not given) or cannot be written."""

    exit_code = 6
    kind = "output"


class ShapeError(CrossportError):
    """Input shapes/dtypes/sample inputs do not fit the model, or are missing where they are needed."""

    exit_code = 7
    kind = "input shape"


class UnsafeLoadError(CrossportError):
    """Loading would execute code (pickle, Lambda layer); refused without an explicit trust flag."""

    exit_code = 8
    kind = "unsafe"


class ModelClassError(CrossportError):
    """--model-class / factory does not import, is not an nn.Module, or cannot be built with the kwargs."""

    exit_code = 9
    kind = "model class"


class ParameterLossError(CrossportError):
    """The converted model would train fewer (or more) parameters than the source; ``--allow-param-loss`` accepts."""

    exit_code = 11
    kind = "parameters lost"


EXIT_CODES: dict[int, str] = {
    0: "success (conversion verified, or verification passed)",
    1: "verification ran and the outputs did not match",
    2: "command-line usage error (unknown option, missing argument)",
    3: "a path does not exist or is the wrong kind (file vs directory)",
    4: "a model file is corrupt, truncated or of an unknown format",
    5: "the model uses an op or feature the route cannot convert",
    6: "the output exists (use --force) or cannot be written",
    7: "input shapes, dtypes or sample inputs do not fit the model",
    8: "loading would run code from the file; pass the trust flag to allow it",
    9: "--model-class / factory cannot be imported or built",
    10: "other crossport error",
    11: "the converted model's trainable parameters differ from the source's (--allow-param-loss accepts it)",
    70: "internal error (a bug in crossport; rerun with -v and report it)",
    130: "interrupted (Ctrl-C / SIGTERM); nothing was written",
}
