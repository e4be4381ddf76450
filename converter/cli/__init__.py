"""The ``crossport`` command group.

Subcommands live in their own modules and are imported only when invoked, so ``crossport --help`` and
``crossport rewrite`` never pay for torch or TensorFlow (Click docs, "Lazily Loading Subcommands").
"""
from __future__ import annotations

import importlib

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
