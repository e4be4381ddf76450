"""The one front door: ``convert(source, ConvertOptions)`` for both directions.

Resolve the target and output (``job``), plan the routes (``plan``), load the source once (``sources`` for
TensorFlow targets, ``keras_sources`` for PyTorch targets), run the routes in order (``plan.try_routes``), then
write the report and the manifest. Everything is written in a private temporary directory beside the output and
moved into place only after verification passed (or with ``force``).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from converter.conversion.job import (DEPLOY_TARGETS, ConversionResult, ConvertOptions, Clock, Job, ProgressFn,
                                   check_quantization, existing_ancestor, is_torch_target, resolve_output,
                                   resolve_target, SourceSession, workdir)
from converter.conversion.manifest import manifest_path, write_manifest
from converter.conversion.ledger import Ledger
from converter.errors import OutputError, UnsupportedError
from converter.formats import Format, sniff

__all__ = ["ConversionResult", "ConvertOptions", "convert", "manifest_path", "resolve_target"]


def convert(source: str, options: ConvertOptions | None = None, progress: ProgressFn | None = None,
            **overrides: Any) -> ConversionResult:
    """Convert ``source`` and verify the result; see ``ConvertOptions``. Keyword overrides update the options.

    Returns a result whose ``report.passed`` says whether every hop matched; raises ``CrossportError`` subclasses
    for problems with the input. Nothing is left at the output path unless verification passed or ``force``.
    """
    options = replace(options or ConvertOptions(), **overrides)
    if isinstance(options.input_shapes, dict):
        options = replace(options, input_shapes=tuple(options.input_shapes.items()))
    return run_one(source, options, progress)


def run_one(source: str, options: ConvertOptions, progress: ProgressFn | None = None,
            session: SourceSession | None = None) -> ConversionResult:
    """``convert`` for one target, inside a batch's ``session`` when given (``converter.conversion.batch``)."""
    result = _convert(source, options, progress, session)
    if options.report_path:
        result.report.write(Path(options.report_path))
    if options.manifest:
        write_manifest(result.artifact, result.report)
    return result


def _convert(source: str, options: ConvertOptions, progress: ProgressFn | None,
             session: SourceSession | None = None) -> ConversionResult:
    from converter.conversion.plan import plan_routes, try_routes

    target = resolve_target(options)
    check_quantization(options, target)
    fmt = sniff(source)
    output = resolve_output(source, target, options)
    torch = is_torch_target(target)
    if torch:
        target = "pt2" if target == "torch" else target
        if target in DEPLOY_TARGETS:
            from converter.conversion.deploy import require

            require(target)  # a missing toolchain is one line before any work
        if not options.force:
            from converter.conversion.sources import refuse_nonfinite_file

            refuse_nonfinite_file(source, fmt)
        if options.emit_source:
            emit_dir = Path(options.emit_source)
            if emit_dir.exists() and (not emit_dir.is_dir() or any(emit_dir.iterdir())) and not options.force:
                raise OutputError(f"{emit_dir}: already exists; pass --force to replace it")
    elif fmt in (Format.KERAS, Format.H5, Format.SAVED_MODEL, Format.TFLITE):
        raise UnsupportedError(f"{source}: converting {fmt.value} sources is not supported yet; "
                               "crossport converts PyTorch and ONNX sources in this release")
    plan = plan_routes(options.route, fmt, target, bool(options.emit_source), source)
    clock = Clock(progress)
    with workdir(existing_ancestor(output)) as tmp:
        job = Job(source, fmt, target, output, options, clock, tmp, session)
        loaded: Any
        if torch:
            from converter.conversion.keras_sources import load_keras_source

            _import_frameworks(fmt, plan, clock)
            keras_file = fmt in (Format.KERAS, Format.H5)
            loaded = job.shared("keras-source", lambda _: load_keras_source(source, options, clock)) if keras_file \
                else None
            ledger = Ledger()
        else:
            from converter.conversion.sources import load_for_tf

            loaded, ledger = load_for_tf(job)
        return try_routes(plan, loaded, job, ledger)


def _import_frameworks(fmt: Format, plan: Any, clock: Clock) -> None:
    """For a PyTorch target: TensorFlow/Keras (a TensorFlow-side source) and the modules the first route imports
    (``preload``), up front and together, before any model exists -- so they import with no collection and are
    frozen after (``memory.importing_frameworks``; torch, onnx2torch and onnxsim imported in the middle of the
    onnx route took 3.1 s of a ResNet50 conversion), and no conversion object is frozen with them."""
    from converter import frameworks
    from converter.memory import importing_frameworks

    preload = getattr(plan.routes[0], "preload", None) if plan.routes else None
    tf_side = fmt in (Format.KERAS, Format.H5, Format.SAVED_MODEL)
    if not tf_side and preload is None:
        return
    with clock.step("import-frameworks", "importing the frameworks"), importing_frameworks():
        if tf_side:
            frameworks.keras()
        if preload is not None:
            preload()
