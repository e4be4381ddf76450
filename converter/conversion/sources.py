"""Sources for TensorFlow/Keras/ONNX targets: a PyTorch model (exported to ONNX in ``converter.conversion.torch_source``) or an
ONNX file, loaded and checked once, with the first hop (PyTorch vs onnxruntime) already in the ledger.

Every route to TensorFlow starts from the ``OnnxSource`` this returns, so a route that hands over to the next
does not export again.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from converter.conversion.job import Clock, Job, memory_scratch
from converter.conversion.ledger import Ledger
from converter.errors import CrossportError, ModelFileError, first_line
from converter.formats import Format
from converter.model_checks import check_onnx_ops, keras_file_nonfinite, onnx_nonfinite, raise_if_nonfinite
from converter.layout import Layout
from converter.parity.inputs import InputSet, InputSpec, make_input_sets, quality_sets
from converter.parity.report import as_intermediate, run_hop
from converter.parity.runners import OnnxRunner, Runner
from converter.result import OVERLAPPED
from converter.conversion.torch_source import FORCE_HINT, TorchSide, runner_for, torch_layouts
from converter.conversion.torch_source import prepare as prepare_torch_side


@dataclass(frozen=True)
class OnnxSource:
    """The source as an ONNX file plus the reference every later hop compares against."""

    onnx_path: Path
    specs: tuple[InputSpec, ...]
    sets: tuple[InputSet, ...]
    runner: Runner | None  # the PyTorch source (recorded outputs); None for an ONNX source
    layouts: tuple[Layout, ...]  # of the inputs, as the source takes them
    exported: Any  # converter.adapters.torch_onnx.ExportResult
    onnx_runner: OnnxRunner
    parameter_names: frozenset[str] = frozenset()
    trainable: int | None = None  # PyTorch's trainable element count

    @property
    def output_names(self) -> list[str]:
        return list(self.exported.output_names)


def load_for_tf(job: Job) -> tuple[OnnxSource, Ledger]:
    """Load the source, export/copy it to ONNX, and (verifying) compare the PyTorch source with onnxruntime. In a
    ``SourceSession`` this happens once for all of the source's targets; each gets its own copy of the ledger."""
    if job.fmt == Format.ONNX and job.target == "onnx":
        raise CrossportError("source and target are both ONNX; pick --to keras, saved_model or tflite")
    targets = job.session.targets if job.session is not None else (job.target,)
    src, ledger = job.shared("tf-source", lambda tmp: _load(replace(job, tmp=tmp), targets))
    ledger = ledger.copy()
    if ledger.hops and job.target != "onnx":  # the PyTorch vs ONNX hop decides only when ONNX is the artifact
        ledger.hops[0] = as_intermediate(ledger.hops[0])
    made_by = job.reused("tf-source")
    if made_by:
        ledger.notes.append(f"source loaded, exported to ONNX and checked once, while converting to {made_by}; "
                            "its timings are in that report")
    return src, ledger


def _load(job: Job, targets: tuple[str, ...]) -> tuple[OnnxSource, Ledger]:
    ledger = Ledger()
    if job.fmt == Format.ONNX:
        src = _onnx_source(job)
        ledger.route[:] = ["onnx", "onnx"]
        ledger.time_runner(job, src.onnx_runner, src.sets, src.layouts, "source")
        return src, ledger
    side = _torch_side(job, targets)
    runner = runner_for(side)
    ledger.run_cache.update({(id(runner), id(s)): list(o) for s, o in zip(side.sets, side.outputs)})
    ledger.notes.extend(side.notes)
    ledger.latency.extend(side.latency)
    exported = side.exported
    ledger.route[:] = [job.fmt.value, f"onnx ({exported.exporter} exporter)"]
    onnx_runner = OnnxRunner(exported.path, side.layouts, runner.output_layouts)
    src = OnnxSource(exported.path, side.specs, side.sets, runner, side.layouts, exported, onnx_runner,
                     side.parameter_names, side.trainable)
    # The ONNX file is checked on its own only when it is delivered; for a TensorFlow target the routes compare
    # PyTorch with their artifact end to end and run onnxruntime only to localize a failure (``check_chain``).
    if job.options.verify and "onnx" in targets:
        with job.clock.step("verify", "verifying PyTorch vs ONNX (onnxruntime)"):
            ledger.hops.append(run_hop(runner, onnx_runner, list(src.sets), src.layouts, src.output_names, job.tol,
                                       ledger.run_cache))
        # Its outputs on every set are in run_cache now; the Keras build would otherwise hold a second copy of
        # the weights in this session while it builds its own.
        onnx_runner.release()
    return src, ledger


def _torch_side(job: Job, targets: tuple[str, ...]) -> TorchSide:
    """The PyTorch steps; for a TensorFlow target in a fresh process they run in a forked worker while this
    process imports TensorFlow/Keras (``converter.forked``: 2-3 s of the critical path on two cores)."""
    from converter import forked

    options, clock = job.options, job.clock
    # The builder reads the intermediate ONNX with onnx.load, which follows a .data file; a published .onnx and
    # the onnx2tf route get a single file.
    external = "onnx" not in targets and options.route != "onnx2tf"
    # Only an intermediate ONNX goes to RAM: a delivered one is moved into place on the output's filesystem.
    size = os.path.getsize(job.source) if os.path.isfile(job.source) else 0
    onnx_path = (memory_scratch(job.tmp, size) if external else job.tmp) / "model.onnx"
    if all(t == "onnx" for t in targets) or not forked.can_fork():
        return prepare_torch_side(job.source, job.fmt, options, onnx_path, clock, external_data=external)

    def work() -> TorchSide:
        from converter.frameworks import torch_on_cpu_only

        torch_on_cpu_only()
        child = Clock(clock.progress)
        side = prepare_torch_side(job.source, job.fmt, options, onnx_path, child, external_data=external,
                                  runs_beside_export=True)
        return replace(side, module=None, timings=tuple(child.timings.items()))

    worker = forked.start(work)
    try:
        t0 = time.perf_counter()
        from converter.frameworks import keras as _keras
        from converter.memory import importing_frameworks

        _keras()
        clock.timings["import-tensorflow" + OVERLAPPED] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with importing_frameworks():
            _import_what_follows(targets)
        clock.timings["import-builder" + OVERLAPPED] = time.perf_counter() - t0
        side = worker.result()
    except BaseException:
        worker.kill()
        raise
    for key, seconds in side.timings:
        clock.timings[key] = clock.timings.get(key, 0.0) + seconds
    return side


def _import_what_follows(targets: tuple[str, ...]) -> None:
    """While the worker still exports: the modules the steps after it import (onnx alone ~0.7 s), so that time is
    not added after the worker's result arrives."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401

    import converter.keras_builder  # noqa: F401

    if "tflite" in targets:
        import ai_edge_litert.interpreter  # noqa: F401

        import converter.tflite_writer  # noqa: F401


def _onnx_source(job: Job) -> OnnxSource:
    import onnx

    from converter.adapters.torch_onnx import ExportResult
    from converter.keras_builder.shapes import graph_inputs

    source, options = job.source, job.options
    with job.clock.step("load", f"loading {source}"):
        model = load_onnx(source)
    check_onnx_ops(model, source)
    if not options.force:
        raise_if_nonfinite(source, onnx_nonfinite(model), FORCE_HINT)
    given = {n: s for n, s in options.input_shapes if n}
    unnamed = [s for n, s in options.input_shapes if not n]
    ginputs = graph_inputs(model, None if not options.input_shapes else
                           (given or {gi.name: s for gi, s in zip(graph_inputs_safe(model), unnamed)}))
    from converter.input_shapes import check_range_names, int_range_for

    check_range_names(options.int_ranges, [g.name for g in ginputs])
    specs = tuple(InputSpec(g.name, g.shape, str(g.dtype), int_range_for(g.name, options.int_ranges))
                  for g in ginputs)
    dynamic = any(g.batch_dynamic for g in ginputs) and not options.static_batch
    sets = tuple(make_input_sets(list(specs), seed=options.seed, dynamic_batch=dynamic))
    if options.quant_mode and options.verify:  # top-1 agreement needs more rows than the two default batches
        sets += tuple(quality_sets(list(specs), options.seed, dynamic))
    layouts = torch_layouts(specs)
    onnx_path = job.tmp / "model.onnx"
    _save_onnx_copy(model, onnx_path)  # not a file copy: the source may keep its weights in external .data files
    runner = OnnxRunner(onnx_path, layouts, ())
    try:
        probe = runner.run(sets[0].arrays)
    except Exception as err:  # noqa: BLE001 - onnxruntime's own exception types
        shapes = [list(a.shape) for a in sets[0].arrays]
        raise ModelFileError(f"{source}: onnxruntime cannot run it on inputs of shape {shapes} (check "
                             f"--input-shape): {str(err).strip().splitlines()[0][:200]}") from err
    runner.output_layouts = tuple(Layout.NCHW if o.ndim == 4 else Layout.NONE for o in probe)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    exported = ExportResult(onnx_path, "given", opset or 0, tuple(s.name for s in specs),
                            tuple(o.name for o in model.graph.output), dynamic)
    return OnnxSource(onnx_path, specs, sets, None, layouts, exported, runner)


def load_onnx(source: str) -> Any:
    """``onnx.load`` + the checker, any failure as one ``ModelFileError`` line."""
    import onnx

    try:
        model = onnx.load(source)
        onnx.checker.check_model(model)
    except Exception as err:  # noqa: BLE001
        raise ModelFileError(f"{source}: not a valid ONNX model ({first_line(err)})") from err
    return model


def _save_onnx_copy(model: Any, path: Path) -> None:
    """Write the loaded model (``onnx.load`` already pulled in any external ``.data`` files) as one file;
    models past protobuf's 2 GB limit keep their tensors in one external file beside it."""
    import onnx

    if model.ByteSize() < (2**31 - 2**20):
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")


def refuse_nonfinite_file(source: str, fmt: Format) -> None:
    """Keras/H5 and ONNX sources on the PyTorch route: scanned before the route loads them (h5py / protobuf only,
    no code from the file runs)."""
    if fmt in (Format.KERAS, Format.H5):
        raise_if_nonfinite(source, keras_file_nonfinite(source), FORCE_HINT)
    elif fmt == Format.ONNX:
        import onnx

        try:
            model = onnx.load(source)
        except Exception:  # noqa: BLE001 - unreadable: the route reports it with its own message
            return
        check_onnx_ops(model, source)
        raise_if_nonfinite(source, onnx_nonfinite(model), FORCE_HINT)


def graph_inputs_safe(model: Any) -> list[Any]:
    init = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]
