"""``crossport rewrite``: model source PyTorch <-> Keras 3, optionally proven by weight transfer."""
from __future__ import annotations

from pathlib import Path

import click

from converter.cli._common import run_guarded, verbosity_options

_LAYOUT_HELP = ("channels_last (default): idiomatic NHWC Keras; channel dims remapped, inputs transposed. "
                "channels_first: keeps NCHW exactly (data_format='channels_first'); TensorFlow-CPU runs it only under XLA. "
                "Not given: channels_last unless NCHW-only constructs (view/permute/size of image tensors) would be "
                "left as TODOs, then channels_first.")


@click.command("rewrite", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--to", "to", type=click.Choice(["keras", "torch"]), required=True,
              help="Target framework: keras (from PyTorch source) or torch (from Keras / tf.keras source).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file (or directory tree).")
@click.option("--in-place", is_flag=True, help="Overwrite the source files (the only way to touch them).")
@click.option("--diff", "show_diff", is_flag=True, help="Print a unified diff instead of writing.")
@click.option("--check", is_flag=True, help="Exit 1 if anything would change or a TODO remains; write nothing.")
@click.option("--layout", type=click.Choice(["channels_last", "channels_first"]), default=None, help=_LAYOUT_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing -o output.")
@click.option("--verify", is_flag=True, help="Run both models (imports and runs your code) and compare outputs.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="1x1x28x28",
              help="Sample input shape for --verify (repeat for several inputs). With --to keras: runs the torch model "
              "once to write exact channels_last code for view/permute/size/squeeze/mean of image tensors; with --to "
              "torch: Keras' channels-last shape (1x28x28x1), runs the Keras model once to write concrete "
              "in_features/in_channels (opt-in to running your code).")
@click.option("--class", "class_name", help="Model class to verify (default: the only top-level model).")
@click.option("--init-kwargs", help="JSON object of constructor arguments, e.g. '{\"num_classes\": 10}'.")
@click.option("--atol", type=float, default=1e-4, show_default=True)
@click.option("--rtol", type=float, default=1e-4, show_default=True)
@click.option("--elementwise", is_flag=True,
              help="Judge each element by |a-b| <= atol + rtol*|b| alone, without the term relative to the output's "
                   "RMS (which keeps float32 rounding on outputs of any magnitude from failing).")
@click.option("--seed", type=int, default=0, show_default=True)
@verbosity_options
def command(sources: tuple[Path, ...], to: str, output: Path | None, in_place: bool, show_diff: bool, check: bool,
            layout: str | None, force: bool, verify: bool, input_shapes: tuple[str, ...], class_name: str | None,
            init_kwargs: str | None, atol: float, rtol: float, elementwise: bool, seed: int, verbose: bool, quiet: bool) -> None:
    """Rewrite PyTorch model source (nn.Module, forward, nn.Sequential, F.*) into Keras 3 source, or Keras source
    (Sequential, functional API, subclassed Model/Layer; keras or tf.keras) into PyTorch (--to torch).

    Comments and non-model code survive; untranslatable constructs are kept and marked
    '# crossport: TODO(<rule>): why'. Without -o/--in-place/--diff/--check the result goes to stdout.
    """
    modes = [m for m, on in (("output", output is not None), ("in_place", in_place), ("diff", show_diff),
                             ("check", check)) if on]
    if len(modes) > 1:
        raise click.UsageError("choose one of -o, --in-place, --diff, --check")
    if verify and not input_shapes:
        raise click.UsageError("--verify needs --input-shape, e.g. --input-shape 1x1x28x28")
    if verify and (len(sources) != 1 or sources[0].is_dir()):
        raise click.UsageError("--verify works on one source file")

    def body() -> int:
        from converter.input_shapes import unnamed_shapes
        from converter.rewrite.command import RewriteCommand, run_rewrite
        from converter.rewrite.files import RewriteJob
        from converter.rewrite.options import DEFAULT_LAYOUT, RewriteOptions

        job = RewriteJob(sources=sources, mode=modes[0] if modes else "stdout", output=output, force=force,
                         options=RewriteOptions(to=to, layout=layout or DEFAULT_LAYOUT, layout_auto=layout is None))
        return run_rewrite(RewriteCommand(job=job, verify=verify, input_shapes=unnamed_shapes(input_shapes),
                                          class_name=class_name,
                                          init_kwargs=init_kwargs, atol=atol, rtol=rtol, elementwise=elementwise, seed=seed, quiet=quiet,
                                          verbose=verbose), echo=click.echo)

    run_guarded(verbose, body)
