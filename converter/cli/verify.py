"""``crossport verify``: parse flags into ``VerifyOptions`` and call ``converter.parity.verify.verify``."""
from __future__ import annotations

import shlex
import sys

import click

from converter.cli._common import run_guarded, verbosity_options
from converter.frameworks import quiet_frameworks


@click.command("verify", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("reference")
@click.argument("candidate", required=False)
@click.option("--golden", "golden_dir", metavar="DIRECTORY",
              help="Check REFERENCE (the only model given) against golden files saved with --save-golden.")
@click.option("--save-golden", "save_golden", metavar="DIRECTORY",
              help="Store the inputs, reference outputs and a manifest here, for later --golden checks.")
@click.option("--inputs", "inputs_path", metavar="FILE.npz",
              help="Real inputs: a .npz with one array per input (by name, else in order), in the reference's layout.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]1x3x224x224",
              help="Input shape in the reference's layout (default: the models' signatures).")
@click.option("--input-dtype", help="dtype of generated inputs (default: from the signature, else float32).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the first generated input set.")
@click.option("--dist", "distributions", multiple=True, type=click.Choice(["normal", "uniform", "large"]),
              help="Input distributions, one set each (default: normal, uniform [0,1), large = normal x 100).")
@click.option("--int-range", "int_ranges", multiple=True, metavar="[NAME=]LO:HI",
              help="Range [LO, HI) for integer inputs (e.g. input_ids=0:30522); repeat per input; without NAME: "
                   "every integer input (default 0:10).")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance: |a-b| <= atol + rtol*|b| + 1e-5*rms(b) (--elementwise drops the last term).")
@click.option("--rtol", type=float, default=1e-4, show_default=True, help="Relative tolerance (b = reference).")
@click.option("--elementwise", is_flag=True,
              help="Judge each element by |a-b| <= atol + rtol*|b| alone, without the term relative to the output's "
                   "RMS (which keeps float32 rounding on outputs of any magnitude from failing).")
@click.option("--tol", "tols", multiple=True, metavar="NAME=ATOL,RTOL", help="Tolerance for one output.")
@click.option("--layout", "layouts", multiple=True, metavar="[ref:|cand:]NAME=LAYOUT",
              help="Layout of a tensor (nchw, nhwc, ncl, nlc, ncdhw, ndhwc, none); without a prefix: the candidate's.")
@click.option("--manifest", type=click.Path(dir_okay=False),
              help="crossport conversion report giving the layouts (default: <candidate>.crossport.json if present).")
@click.option("--model-class", help="For weights (state_dict, checkpoint, .safetensors): the architecture, as "
              "package.module:Class, file.py:Class, timm:NAME or transformers:Class.")
@click.option("--weights-key", metavar="KEY", help="Where a checkpoint dict keeps the weights (dotted for nesting).")
@click.option("--model-kwargs", default="{}", help="JSON keyword arguments for --model-class or a factory.")
@click.option("--trust-pickle", is_flag=True, help="Allow unpickling a whole nn.Module (runs code from the file).")
@click.option("--trust-code", is_flag=True, help="Allow Keras Lambda layers (safe_mode=False; runs code from the file).")
@click.option("--layers", is_flag=True, help="Per-layer error profile even when the outputs match.")
@click.option("--no-localize", is_flag=True, help="Do not look for the first divergent layer on a mismatch.")
@click.option("--report", "reports", multiple=True, metavar="FILE",
              help="Write the report: .json (schema crossport.verify v1) or .html (self-contained). Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the table.")
@verbosity_options
def command(reference: str, candidate: str | None, golden_dir: str | None, save_golden: str | None,
            inputs_path: str | None, input_shapes: tuple[str, ...], input_dtype: str | None, seed: int,
            distributions: tuple[str, ...], int_ranges: tuple[str, ...], atol: float, rtol: float, elementwise: bool, tols: tuple[str, ...],
            layouts: tuple[str, ...], manifest: str | None, model_class: str | None, weights_key: str | None,
            model_kwargs: str,
            trust_pickle: bool, trust_code: bool, layers: bool, no_localize: bool, reports: tuple[str, ...],
            as_json: bool, verbose: bool, quiet: bool) -> None:
    """Run REFERENCE and CANDIDATE on the same inputs and compare every output.

    Models: .pt2, TorchScript, state_dict (+ --model-class), module:factory, .onnx, .keras, .h5, SavedModel
    directory, .tflite. With --golden DIR, give only the model to check.

    Exit codes: 0 outputs match, 1 mismatch, 3 bad path, 4 unreadable model, 6 report not writable,
    7 inputs/shapes/layouts do not fit (the message says what to pass), 8 unsafe load refused, 9 model class,
    70 internal error.
    """
    quiet_frameworks()

    def body() -> int:
        from converter import frameworks
        from converter.errors import ShapeError
        from converter.jsonargs import parse_json_object
        from converter.parity.loaders import LoadOptions
        from converter.parity.verify import VerifyOptions, verify
        from converter.input_shapes import parse_input_shapes, parse_int_ranges

        frameworks.set_verbose(verbose)
        kwargs = parse_json_object(model_kwargs, "--model-kwargs")
        if golden_dir and candidate:
            raise click.UsageError("with --golden give only the model to check: crossport verify CAND --golden DIR")
        if not golden_dir and not candidate:
            raise click.UsageError("missing CANDIDATE (or --golden DIR)")
        _check_paths(golden_dir, save_golden, inputs_path, reports)
        options = VerifyOptions(
            inputs=inputs_path, input_shapes=parse_input_shapes(input_shapes),
            input_dtype=input_dtype, seed=seed, distributions=tuple(distributions) or ("normal", "uniform", "large"),
            int_ranges=parse_int_ranges(int_ranges), atol=atol, rtol=rtol, elementwise=elementwise, tolerances=tuple(_tol(t) for t in tols),
            layouts=tuple(layouts), manifest=manifest,
            load=LoadOptions(model_class, kwargs, trust_pickle, trust_code, weights_key), layers=layers,
            localize=not no_localize, save_golden=save_golden,
            command=" ".join(shlex.quote(a) for a in ["crossport", "verify", *sys.argv[2:]]),
        )
        try:
            if golden_dir:
                from converter.parity.golden import verify_golden

                report = verify_golden(reference, golden_dir, options)
            else:
                report = verify(reference, candidate, options)
        except ShapeError as err:
            raise ShapeError(_with_input_source(str(err), inputs_path, input_shapes)) from err
        for path in reports:
            report.write(path)
        if as_json:
            click.echo(report.to_json())
        elif not quiet or not report.passed:
            click.echo(report.format_text())
        else:
            click.echo("crossport verify: PASSED")
        return 0 if report.passed else 1

    run_guarded(verbose, body)


def _check_paths(golden_dir: str | None, save_golden: str | None, inputs_path: str | None,
                 reports: tuple[str, ...]) -> None:
    """Wrong kinds of path, refused before any model is loaded: a missing or file --golden, a file --save-golden,
    a directory --inputs, a --report that cannot be written."""
    import os
    from pathlib import Path

    from converter.errors import InputPathError, OutputError

    if golden_dir and not Path(golden_dir).is_dir():
        what = "is a file, not a directory" if Path(golden_dir).exists() else "no such directory"
        raise InputPathError(f"--golden {golden_dir}: {what}")
    if save_golden and Path(save_golden).exists() and not Path(save_golden).is_dir():
        raise InputPathError(f"--save-golden {save_golden}: is a file, not a directory")
    if inputs_path and Path(inputs_path).is_dir():
        raise InputPathError(f"--inputs {inputs_path}: is a directory; pass a .npz file")
    if inputs_path and Path(inputs_path).is_file():
        _check_npz_dtypes(inputs_path)
    for report in reports:
        path = Path(report)
        parent = path.parent if str(path.parent) else Path(".")
        if path.is_dir():
            raise OutputError(f"--report {report}: is a directory; pass a .json or .html file path")
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise OutputError(f"--report {report}: cannot write the report there ({parent} is not a writable directory)")


def _check_npz_dtypes(inputs_path: str) -> None:
    """Strings, objects or dates in --inputs cannot be fed to any model: say which array, before loading models.
    An unreadable file is left to the loader, which reports it."""
    import numpy as np

    from converter.errors import ShapeError

    try:
        with np.load(inputs_path, allow_pickle=False) as data:
            kinds = {k: data[k].dtype for k in data.files}
    except Exception:  # noqa: BLE001 - reported by the verify loader with its own message
        return
    for key, dtype in kinds.items():
        if dtype.kind not in "biuf":
            raise ShapeError(f"--inputs {inputs_path}: array {key!r} has dtype {dtype}; model inputs must be "
                             "float, int or bool arrays")


def _with_input_source(message: str, inputs_path: str | None, input_shapes: tuple[str, ...]) -> str:
    """Say which flag supplied the inputs that do not fit, so the user knows what to change."""
    if inputs_path and inputs_path not in message:
        return f"--inputs {inputs_path}: {message}"
    if input_shapes and "--input-shape" not in message:
        return f"{message} (from --input-shape {' '.join(input_shapes)})"
    return message


def _tol(text: str) -> tuple[str, float, float]:
    from converter.errors import ShapeError

    name, sep, values = text.rpartition("=")
    try:
        atol, rtol = (float(x) for x in values.split(","))
    except ValueError:
        sep = ""
    if not sep or not name:
        raise ShapeError(f"--tol {text!r}: expected NAME=ATOL,RTOL, e.g. logits=1e-3,1e-3")
    return name, atol, rtol
