"""``crossport transfer``: a PyTorch state_dict -> a trained Keras model built from rewritten source, or a trained
``.keras`` model -> a PyTorch state_dict / exported program through ``--to torch`` rewritten source."""
from __future__ import annotations

from pathlib import Path

import click

from converter.cli._common import run_guarded, verbosity_options


@click.command("transfer", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("--into", "into", required=True,
              help="Rewritten source and class (or builder function): OUT.py:Class.")
@click.option("--source", "source",
              help="The original PyTorch source (ORIG.py or ORIG.py:Class): used to verify the transfer.")
@click.option("--unverified", is_flag=True,
              help="Without --source: map by the Keras attribute paths and write the file unverified.")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True,
              help="The .keras file to write (from a torch checkpoint), or .pt / .pt2 (from a .keras model).")
@click.option("--trust-code", is_flag=True,
              help="Load the .keras file with safe_mode=False (runs code stored in it, e.g. Lambda layers).")
@click.option("--trust-keras", "trust_keras", is_flag=True, hidden=True,
              help="Deprecated spelling of --trust-code.")
@click.option("--input-shape", "input_shapes", multiple=True, required=True, metavar="1x1x28x28",
              help="Sample input shape to build and verify (repeat for several inputs).")
@click.option("--init-kwargs", help="JSON object of constructor arguments (same for both classes).")
@click.option("--layout", type=click.Choice(["channels_last", "channels_first"]),
              help="Layout of the rewritten code (default: detected from it).")
@click.option("--force", is_flag=True, help="Overwrite an existing output.")
@click.option("--trust-pickle", is_flag=True,
              help="Load a checkpoint that holds pickled objects besides tensors (runs code from the file).")
@click.option("--atol", type=float, default=1e-4, show_default=True)
@click.option("--rtol", type=float, default=1e-4, show_default=True)
@verbosity_options
def command(checkpoint: Path, into: str, source: str | None, unverified: bool, output: Path, trust_code: bool, trust_keras: bool,
            input_shapes: tuple[str, ...], init_kwargs: str | None, layout: str | None, force: bool, trust_pickle: bool,
            atol: float, rtol: float, verbose: bool, quiet: bool) -> None:
    """Load CHECKPOINT (torch.load(weights_only=True)) into the original class, move the weights into the
    rewritten Keras class, compare outputs, and save OUT only if they match.

    Without --source the checkpoint keys are mapped by the Keras model's attribute paths; nothing can be
    compared, so the file is written only with --unverified.

    A CHECKPOINT ending in .keras goes the other way: it is loaded (safe_mode=True unless --trust-code; --source
    names the Keras source of custom layers), its weights move into the class of the --to torch rewrite, outputs
    are compared (--input-shape in Keras' channels-last order) and -o model.pt / model.pt2 is written if they match."""

    from converter.input_shapes import unnamed_shapes

    def body() -> int:
        if checkpoint.suffix == ".keras":
            return _from_keras()
        return _from_torch()

    def _from_keras() -> int:
        from converter.rewrite.transfer_checkpoint import parse_target
        from converter.rewrite.transfer_keras import KerasTransferJob, run_keras_transfer

        torch_path, entry = parse_target(into)
        if entry is None:
            raise click.UsageError("--into must be OUT.py:Class")
        report, path = run_keras_transfer(KerasTransferJob(
            model_file=checkpoint, torch_source=torch_path, entry=entry, output=output, input_shapes=unnamed_shapes(input_shapes),
            keras_source=parse_target(source)[0] if source else None, init_kwargs_json=init_kwargs,
            trust_code=trust_code or trust_keras, force=force, atol=atol, rtol=rtol))
        return _finish(report, path, quiet)

    def _from_torch() -> int:
        from converter.rewrite.transfer_checkpoint import TransferJob, parse_target, run_transfer

        keras_path, keras_class = parse_target(into)
        if keras_class is None:
            raise click.UsageError("--into must be OUT.py:Class")
        torch_path, torch_class = parse_target(source) if source else (None, None)
        report, path = run_transfer(TransferJob(
            checkpoint=checkpoint, keras_source=keras_path, class_name=keras_class, torch_source=torch_path,
            torch_class=torch_class or keras_class, output=output, input_shapes=unnamed_shapes(input_shapes),
            init_kwargs_json=init_kwargs, layout=layout, force=force, atol=atol, rtol=rtol, unverified=unverified,
            trust_pickle=trust_pickle))
        if report is None:
            click.echo(f"wrote {path} (UNVERIFIED: no original class to compare against; pass --source to verify)")
            return 0
        return _finish(report, path, quiet)

    run_guarded(verbose, body)


def _finish(report: object, path: object, quiet: bool) -> int:
    """Print the parity table (always on failure) and say what was written: the same for both directions."""
    from converter.rewrite.verify import format_report

    if not quiet or not report.passed:  # type: ignore[attr-defined]
        click.echo(format_report(report))
    if not report.passed:  # type: ignore[attr-defined]
        click.echo("crossport: verification failed; nothing was written", err=True)
        return 1
    click.echo(f"wrote {path}")
    return 0
