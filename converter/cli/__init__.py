"""The ``crossport`` command group.

Subcommands live in their own modules and are imported only when invoked, so ``crossport --help`` and
``crossport rewrite`` never pay for torch or TensorFlow (Click docs, "Lazily Loading Subcommands").
"""
from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

# name -> "module:attribute"; one module per subcommand.
_COMMANDS: dict[str, tuple[str, str]] = {
    "convert": ("converter.cli.convert", "Convert a saved model between PyTorch, ONNX and TensorFlow/Keras, verified."),
    "rewrite": ("converter.cli.rewrite", "Rewrite model source PyTorch <-> Keras 3 (libcst rules), optionally verified."),
    "rules": ("converter.cli.rules", "List the source-rewriting rules and their descriptions."),
    "verify": ("converter.cli.verify", "Compare two models (any pair of formats) or a model against golden files; per-output and per-layer errors."),
    "transfer": ("converter.cli.transfer", "Move trained weights into rewritten code (state_dict -> .keras, .keras -> .pt/.pt2), verified."),
}


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = _COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(entry[0])
        return getattr(module, "command")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Short help comes from the table above so that `crossport --help` imports no subcommand module.
        rows = [(name, _COMMANDS[name][1]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crossport", prog_name="crossport")
def main() -> None:
    """Move neural networks between PyTorch and TensorFlow/Keras, and prove each move was faithful.

    Exit codes: 0 ok, 1 parity mismatch, 2 usage, 3 bad path, 4 unreadable model, 5 unsupported op,
    6 output exists/unwritable, 7 input shape, 8 unsafe load refused, 9 model class, 70 internal, 130 interrupted.
    """


_HEAVY = ("torch", "tensorflow", "keras", "onnxruntime")


def entry() -> NoReturn:
    """The console script: run the group, then exit without the interpreter's module teardown.

    Tearing down an interpreter that has imported torch and TensorFlow takes 1.5-2.5 s on the 2-core CI machine
    (measured: a script that only imports torch, tensorflow, keras and onnxruntime spends 1.6 s between its last
    statement and process exit) -- 10-20 % of a ResNet-18 conversion. Once the command has returned, every output
    is closed and published, so the remaining work is freeing memory the OS reclaims anyway. ``atexit`` handlers
    (our temporary KERAS_HOME, logging) still run; only the teardown is skipped, and only when a heavy framework
    was imported. ``main`` itself stays a plain Click group for in-process callers (tests, ``CliRunner``).
    """
    from converter.memory import process_ends_with_command

    process_ends_with_command()
    try:
        main.main(prog_name="crossport")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    if not any(name in sys.modules for name in _HEAVY):
        sys.exit(code)
    import atexit
    import os

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe must not turn success into a traceback
            pass
    atexit._run_exitfuncs()  # noqa: SLF001 - the documented-by-behaviour way to run handlers before os._exit
    os._exit(code)


def _exit_code(code: object) -> int:
    """``SystemExit.code`` as a process status (None -> 0; a message is printed, as ``sys.exit`` would)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
