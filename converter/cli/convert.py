"""``crossport convert``: parse flags into ``ConvertOptions`` and call ``converter.conversion.convert``."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Callable

import click

from converter.cli._common import run_guarded, verbosity_options
from converter.frameworks import quiet_frameworks


@click.command("convert", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("-o", "--output", help="Output path; its suffix picks the target (.keras, .onnx, .tflite, directory = "
              "SavedModel). With several sources or --to targets: a directory, made if missing, that gets "
              "<source stem><target suffix> for each.")
@click.option("--to", "to", multiple=True, type=click.Choice(["keras", "saved_model", "savedmodel", "tflite", "onnx", "torch", "pt2", "torchscript",
                                           "aoti", "executorch"], case_sensitive=False),
              help="Target format (default: from the output suffix); repeat for several targets, which share one load "
                   "and export of each source. aoti: an AOTInductor package (.pt2, loaded with "
                   "torch._inductor.aoti_load_package); executorch: a .pte program (needs crossport[executorch]).")
@click.option("--model-version", type=int, metavar="N",
              help="saved_model: write OUTPUT/N/saved_model.pb, the versioned layout TF Serving loads from "
                   "--model_base_path=OUTPUT (OUTPUT may already hold other versions).")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="[NAME=]1x3x224x224",
              help="Input shape (repeat for several inputs). ExportedPrograms record it themselves.")
@click.option("--input-dtype", help="dtype of the inputs (default: as the model records them, else float32).")
@click.option("--int-range", "int_ranges", multiple=True, metavar="[NAME=]LO:HI",
              help="Range [LO, HI) for integer inputs, e.g. input_ids=0:30522; repeat per input. Default: an "
                   "input that indexes an embedding stays in its vocabulary, an integer mask is 0/1, others "
                   "the unnamed range, else 0:10.")
@click.option("--model-class", help="For weights (state_dict, checkpoint, .safetensors): the architecture, as "
              "package.module:Class, path/to/file.py:Class, timm:NAME or transformers:Class.")
@click.option("--weights-key", metavar="KEY", help="Where a checkpoint dict keeps the weights (dotted for nesting, e.g. "
              "model_ema.module); default: the file itself, else state_dict, model_state_dict, model, net, ...")
@click.option("--model-kwargs", default="{}", help="JSON keyword arguments for --model-class or a factory.")
@click.option("--trust-pickle", is_flag=True,
              help="Allow loading a whole pickled nn.Module. Unpickling runs code from the file: only for files you trust.")
@click.option("--keep-layout", is_flag=True, help="Keep channels-first (NCHW) inputs/outputs instead of TF's NHWC.")
@click.option("--fp16", is_flag=True, help="TFLite: store weights as float16 (the same as --quantize fp16).")
@click.option("--quantize", metavar="MODE",
              help="TFLite quantization: fp16 (float16 weights), dynamic (int8 weights, float activations), int8 "
                   "(full integer, float inputs/outputs), int8-full (full integer, int8 inputs/outputs). Judged by "
                   "cosine / SNR / top-1 agreement thresholds per mode (see --min-cosine).")
@click.option("--calibration", metavar="DATA.npz",
              help="int8 modes: calibration samples, one array per input (by name, else in order) in the source's "
                   "layout, first axis = samples. Default: the seeded sample inputs (with a warning).")
@click.option("--allow-flex", is_flag=True,
              help="TFLite: write a file that needs Select TF (Flex) ops, which LiteRT cannot run (refused otherwise).")
@click.option("--min-cosine", type=float, help="Quantized TFLite: minimum cosine similarity per output (overrides the mode's default).")
@click.option("--min-snr", "min_snr_db", type=float, help="Quantized TFLite: minimum signal-to-noise ratio in dB.")
@click.option("--min-top1", type=float, help="Quantized TFLite: minimum top-1 agreement for classifier outputs (0-1).")
@click.option("--latency-runs", type=int, default=None,
              help="Timed inference calls per runtime for the report's latency (median, after one warm-up); 0 skips. "
                   "Default: up to 5, fewer once they take 0.5 s (at least 2); a number given here is run in full.")
@click.option("--atol", type=float, default=1e-4, show_default=True, help="Absolute tolerance: |a-b| <= atol + rtol*|b| + 1e-5*rms(b) (--elementwise drops the last term).")
@click.option("--rtol", type=float, default=1e-4, show_default=True, help="Relative tolerance.")
@click.option("--elementwise", is_flag=True,
              help="Judge each element by |a-b| <= atol + rtol*|b| alone, without the term relative to the output's "
                   "RMS (which keeps float32 rounding on outputs of any magnitude from failing).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the sample inputs.")
@click.option("--no-verify", is_flag=True, help="Skip verification (the output says that nothing was verified).")
@click.option("--route", type=click.Choice(["auto", "builder", "onnx2tf", "onnx", "keras-native", "torch-export"]),
              default="auto",
              show_default=True,
              help="TF/Keras targets: builder (crossport's ONNX->Keras 3 builder) or onnx2tf (SavedModel/TFLite only). "
                   "PyTorch targets: onnx (ONNX -> onnx2torch) or keras-native (Keras files reloaded under Keras' "
                   "torch backend, .pt2 only); torch-export (PyTorch sources -> aoti/executorch). auto tries that direction's routes in order and keeps the first "
                   "that verifies; the report lists the routes tried.")
@click.option("--nchw", is_flag=True, help="PyTorch targets: take/return channels-first image tensors (permutes folded into the model).")
@click.option("--trust-code", is_flag=True,
              help="Keras sources: load with safe_mode off (Lambda layers run code): only for files you trust.")
@click.option("--emit-source", "emit_source", type=click.Path(file_okay=False), metavar="DIR",
              help="PyTorch targets: also write model.py (a plain nn.Module) + weights.pt to DIR, verified.")
@click.option("--static-batch", is_flag=True, help="Fix the batch size to the one in --input-shape.")
@click.option("--allow-param-loss", is_flag=True,
              help="Write the result even when it trains fewer (or more) parameters than the source (exit 11 "
                   "otherwise); the report lists the count difference.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing output; write the output even if verification fails.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="Write the full report as JSON here.")
@click.option("--no-manifest", is_flag=True,
              help="Do not write the report <output>.crossport.json beside the output (the layout contract "
                   "`crossport verify` needs is inside the model file too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report instead of the summary.")
@verbosity_options
def command(sources: tuple[str, ...], output: str | None, to: tuple[str, ...], model_version: int | None, input_shapes: tuple[str, ...],
            input_dtype: str | None, int_ranges: tuple[str, ...], model_class: str | None, weights_key: str | None,
            model_kwargs: str, trust_pickle: bool, keep_layout: bool, fp16: bool,
            quantize: str | None, calibration: str | None, allow_flex: bool, min_cosine: float | None,
            min_snr_db: float | None, min_top1: float | None, latency_runs: int,
            atol: float, rtol: float, elementwise: bool, seed: int, no_verify: bool, route: str, nchw: bool, trust_code: bool,
            emit_source: str | None, static_batch: bool, allow_param_loss: bool, force: bool,
            report_path: str | None, no_manifest: bool, as_json: bool, verbose: bool, quiet: bool) -> None:
    """Convert SOURCE (.pt2, TorchScript .pt, state_dict + --model-class, module:factory, .onnx, .keras, SavedModel)
    to Keras 3, SavedModel, TFLite, ONNX, PyTorch (.pt2, TorchScript), an AOTInductor package or an ExecuTorch
    .pte, and verify the result against the source on seeded inputs.

    Exit codes: 0 verified, 1 verification failed (nothing written unless --force), 2 usage, 3 bad path,
    4 unreadable model, 5 unsupported op, 6 output exists/unwritable, 7 input shape, 8 unsafe load refused,
    9 model class, 11 trainable parameters differ, 70 internal error, 130 interrupted. Several SOURCEs or --to
    targets convert each source to each target in one process (frameworks imported once, each source loaded and
    exported once); the batch goes on past a failing item and exits with the first failing item's code.
    """
    quiet_frameworks()

    def body() -> int:
        from converter import frameworks
        from converter.jsonargs import parse_json_object
        from converter.conversion import ConvertOptions, convert
        from converter.input_shapes import parse_input_shapes, parse_int_ranges

        frameworks.set_verbose(verbose)
        kwargs = parse_json_object(model_kwargs, "--model-kwargs")
        options = ConvertOptions(
            to=to[0] if len(to) == 1 else None, output=output, input_shapes=parse_input_shapes(input_shapes),
            input_dtype=input_dtype, int_ranges=parse_int_ranges(int_ranges), model_class=model_class,
            model_kwargs=kwargs, weights_key=weights_key, trust_pickle=trust_pickle,
            keep_layout=keep_layout, fp16=fp16, atol=atol, rtol=rtol, elementwise=elementwise, verify=not no_verify, force=force,
            seed=seed, static_batch=static_batch, allow_param_loss=allow_param_loss, report_path=report_path, route=route,
            nchw=nchw, trust_code=trust_code, emit_source=emit_source, manifest=not no_manifest,
            model_version=model_version,
            quantize=quantize.lower() if quantize else None, calibration=calibration, allow_flex=allow_flex,
            min_cosine=min_cosine, min_snr_db=min_snr_db, min_top1=min_top1,
            **({} if latency_runs is None else {"latency_runs": latency_runs, "latency_budget_s": None}),
        )
        from converter.conversion import resolve_target
        from converter.conversion.plan import RouteUsageError, check_route

        batch = len(sources) > 1 or len(to) > 1
        targets = to if batch else (resolve_target(options),)
        try:
            for target in targets:
                check_route(route, resolve_target(replace(options, to=target)))
        except RouteUsageError as err:
            raise click.UsageError(str(err)) from err
        start = time.perf_counter()

        def progress(message: str) -> None:
            if not quiet and not as_json:
                click.echo(f"[{time.perf_counter() - start:5.1f}s] {message}", err=True)

        if batch:
            from converter.cli.convert_batch import run_batch

            return run_batch(sources, to, options, progress, verbose=verbose, quiet=quiet, as_json=as_json)
        result = convert(sources[0], options, progress=progress)
        if as_json:
            click.echo(result.report.to_json())
        elif not quiet or not result.passed:
            click.echo(result.report.format_text())
        else:
            click.echo(f"crossport: wrote {result.artifact}" if result.artifact else "crossport: nothing written")
        if not options.verify:
            return 0
        return 0 if result.passed else 1

    run_guarded(verbose, lambda: _trapped(body))


def _trapped(body: Callable[[], int]) -> int:
    from converter import interrupt

    with interrupt.trapping():
        return body()
