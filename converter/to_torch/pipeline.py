"""Keras / SavedModel / ONNX -> PyTorch artifact, verified hop by hop, through one of two routes
(``converter.to_torch.routes``): ``onnx`` (ONNX -> onnx2torch) or ``keras-native`` (Keras' torch backend,
``converter.to_torch.native``). ``--route auto`` tries them in the order ``plan_routes`` picks for the model (onnx
first unless the Keras config has recurrent layers or does not list its layers) and keeps the first that verifies.

ONNX-route hops: source (Keras or the SavedModel signature) vs onnxruntime; onnxruntime vs the converted PyTorch
module; source vs the saved artifact reloaded with plain torch. Everything is written to a private temp dir and
moved into place only after every hop passed (or ``--force``, on the last route tried).

Layout: Keras image models take NHWC; by default the PyTorch model keeps that contract (and the report says so).
``--nchw`` wraps the model so rank-4 inputs/outputs are channels-first, the permutation inside the saved graph.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from converter.errors import CrossportError, ModelFileError, OutputError, ShapeError, UnsupportedError
from converter.formats import Format
from converter.layout import Layout
from converter.memory import release_memory
from converter.parity.compare import Tolerance
from converter.parity.inputs import InputSpec, make_input_sets
from converter.parity.report import HopResult, as_intermediate, run_hop, verdict
from converter.result import ConversionReport, TensorInfo

TORCH_TARGETS = ("pt2", "torch", "torchscript")
SUFFIX = {"pt2": ".pt2", "torchscript": ".pt"}


def is_torch_target(target: str) -> bool:
    return target in TORCH_TARGETS


@dataclass(frozen=True)
class LoadedSource:
    """The source model as a runner plus what verification needs to know about it."""

    runner: Any  # a parity runner, or None for an ONNX source (onnxruntime is then the reference)
    specs: tuple[InputSpec, ...]
    layouts: tuple[Layout, ...]  # of the inputs, as the source takes them
    dynamic_batch: bool
    onnx_path: Path
    exporter: str
    opset: int | None
    output_names: tuple[str, ...]
    trainable_reference: tuple[np.ndarray, ...] | None  # the source's trainable weights, when it says
    notes: tuple[str, ...]
    layer_names: tuple[str, ...] = ()  # Keras layer names, for readable names in --emit-source


@dataclass
class _CallRunner:
    """A runner around a plain callable (the SavedModel signature)."""

    fn: Callable[[list[np.ndarray]], list[np.ndarray]]
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in self.fn(list(feeds))]


def _image_layout(rank: int | None) -> Layout:
    return Layout.NHWC if rank == 4 else Layout.NONE


def _given_shapes(options: Any) -> tuple[dict[str, tuple[int, ...]], list[tuple[int, ...]]]:
    named = {n: tuple(s) for n, s in options.input_shapes if n}
    unnamed = [tuple(s) for n, s in options.input_shapes if not n]
    return named, unnamed


def _specs_from_signature(sigs: list[Any], options: Any) -> tuple[list[InputSpec], bool]:
    dynamic = any(s.shape and s.shape[0] is None for s in sigs) and not options.static_batch
    specs = []
    for s in sigs:
        dims = list(s.shape)
        if dims and dims[0] is None:
            dims[0] = 2
        if any(d is None for d in dims):
            raise ShapeError(f"input {s.name!r} has unknown dimensions {tuple(s.shape)}; pass --input-shape "
                             f"{s.name}=" + "x".join(str(d or 8) for d in s.shape))
        if dynamic and dims and dims[0] == 1:
            dims[0] = 2  # torch.export specializes a dimension whose example size is 1
        dtype = "float32" if "float" in s.dtype else s.dtype
        specs.append(InputSpec(s.name, tuple(int(d) for d in dims), dtype))
    return specs, dynamic


@dataclass(frozen=True)
class KerasSource:
    """A Keras model loaded once (TensorFlow backend): the verification reference for every route."""

    model: Any
    sigs: tuple[Any, ...]  # converter.routes.tf_onnx.TfSignature, batch None when dynamic
    runner: Any
    specs: tuple[InputSpec, ...]
    layouts: tuple[Layout, ...]
    dynamic_batch: bool
    output_names: tuple[str, ...]
    trainable: int  # Keras' trainable element count


def _load_keras(source: str, options: Any, clock: Any) -> KerasSource:
    from converter.routes import tf_onnx

    with clock.step("load", f"loading {source} (safe_mode={'off' if options.trust_code else 'on'})"):
        model = tf_onnx.load_keras(source, options.trust_code)
    named, unnamed = _given_shapes(options)
    sigs = tf_onnx.keras_signature(model, named or unnamed)
    specs, dynamic = _specs_from_signature(sigs, options)
    if options.static_batch:
        sigs = [tf_onnx.TfSignature(s.name, sp.shape, s.dtype) for s, sp in zip(sigs, specs)]
    layouts = tuple(_image_layout(len(s.shape)) for s in specs)

    def call(feeds: list[np.ndarray]) -> list[np.ndarray]:
        # One tensor for a one-input model: a subclassed model's call() gets exactly what it was written for.
        out = model(feeds[0] if len(feeds) == 1 else list(feeds), training=False)
        return [np.asarray(o) for o in (out if isinstance(out, (tuple, list)) else (out,))]

    runner = _CallRunner(call, layouts, (), name="keras")
    probe = runner.run(list(make_input_sets(specs, seed=options.seed)[0].arrays))
    runner.output_layouts = tuple(_image_layout(o.ndim) for o in probe)
    names = tuple(getattr(model, "output_names", None) or ())
    if len(names) != len(probe):
        names = tuple(f"output_{k}" for k in range(len(probe)))
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return KerasSource(model, tuple(sigs), runner, tuple(specs), layouts, dynamic, names, trainable)


def _keras_onnx_source(ks: KerasSource, tmp: Path, clock: Any) -> LoadedSource:
    """The ONNX route's first hop for a Keras source: tf2onnx export of the loaded model."""
    from converter.routes import tf_onnx

    onnx_path = tmp / "model.onnx"
    with clock.step("export-onnx", "exporting to ONNX (tf2onnx)"):
        export = tf_onnx.keras_to_onnx(ks.model, list(ks.sigs), onnx_path)
        release_memory()
    from converter.routes.tf_onnx_repair import all_layers

    names = tuple(l.name for l in all_layers(ks.model))
    return LoadedSource(ks.runner, ks.specs, ks.layouts, ks.dynamic_batch and export.dynamic_batch, onnx_path,
                        export.exporter, export.opset, export.output_names, export.trainable, export.notes, names)


def _load_saved_model_source(source: str, options: Any, tmp: Path, clock: Any) -> LoadedSource:
    from converter.routes import tf_onnx

    named, unnamed = _given_shapes(options)
    onnx_path = tmp / "model.onnx"
    with clock.step("export-onnx", f"loading {source} and exporting its serving_default signature (tf2onnx)"):
        export, sigs, call = tf_onnx.saved_model_to_onnx(source, unnamed or list(named.values()), onnx_path)
        release_memory()
    specs, dynamic = _specs_from_signature(sigs, options)
    layouts = tuple(_image_layout(len(s.shape)) for s in specs)
    runner = _CallRunner(call, layouts, (), name="tf-savedmodel")
    probe = runner.run(list(make_input_sets(specs, seed=options.seed)[0].arrays))
    runner.output_layouts = tuple(_image_layout(o.ndim) for o in probe)
    notes = export.notes if export.trainable is not None else (
        *export.notes, "the SavedModel does not list trainable variables; weights were chosen by their ONNX "
                       "consumers (Conv/MatMul/Gemm kernels and biases, normalization scale/bias, embeddings, RNNs)")
    return LoadedSource(runner, tuple(specs), layouts, dynamic and export.dynamic_batch, onnx_path, export.exporter,
                        export.opset, export.output_names, export.trainable, notes)


def _load_onnx_source(source: str, options: Any, tmp: Path, clock: Any) -> LoadedSource:
    import onnx

    from converter.routes.tf_onnx import TfSignature

    with clock.step("load", f"loading {source}"):
        try:
            model = onnx.load(source)
            onnx.checker.check_model(model)
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"{source}: not a valid ONNX model ({str(err).splitlines()[0][:200]})") from err
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    named, unnamed = _given_shapes(options)
    sigs = []
    for k, gi in enumerate(inputs):
        tt = gi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        given = named.get(gi.name) or (unnamed[k] if k < len(unnamed) else None)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        if given and dims and dims[0] is None and not options.static_batch:
            given = (None, *given[1:])  # --input-shape fills the other dims; a symbolic batch stays symbolic
        sigs.append(TfSignature(gi.name, tuple(given) if given else dims, dtype))
    dynamic_src = any(s.shape and s.shape[0] is None for s in sigs)
    specs, dynamic = _specs_from_signature(sigs, options)
    onnx_path = tmp / "model.onnx"
    onnx.save(model, str(onnx_path))  # one self-contained file: the source may keep weights in a .data file
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    layouts = tuple(Layout.NONE for _ in specs)  # an ONNX file's own order, whatever it is
    return LoadedSource(None, tuple(specs), layouts, dynamic and dynamic_src, onnx_path, "given", opset,
                        tuple(o.name for o in model.graph.output), None, ())


def _convert_module(src: LoadedSource, sets: Sequence[Any], notes: list[str]) -> tuple[Any, bool]:
    """onnxsim + onnx2torch, keeping the batch symbolic; when the graph's shape arithmetic cannot be made
    symbolic, fold again at the sample shapes (the batch is then fixed) so that torch.export can trace it."""
    import onnx
    import torch

    from converter.routes import onnx2torch_adapter

    fixed = {s.name: s.shape for s in src.specs}
    release_memory()  # the verification just ran the source and onnxruntime on a few batches
    if src.dynamic_batch:
        simplified, sim_notes = onnx2torch_adapter.simplify(onnx.load(str(src.onnx_path)), fixed)
        release_memory()
        examples = [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in s.arrays) for s in sets[:2]]
        conv = onnx2torch_adapter.convert(simplified, examples)
        del simplified
        release_memory()
        if not conv.runtime_shapes and not sim_notes:
            notes.extend(conv.notes)
            return conv, True
        notes.append(f"the graph computes shapes from the batch size ({'; '.join(conv.notes)}); folded at batch "
                     f"{src.specs[0].shape[0]}, so the PyTorch batch is fixed")
        del conv
    simplified, _ = onnx2torch_adapter.simplify(onnx.load(str(src.onnx_path)), fixed, force_fixed=True)
    release_memory()
    conv = onnx2torch_adapter.convert(simplified)
    del simplified
    release_memory()
    notes.extend(conv.notes)
    return conv, False


def convert_to_torch(source: str, fmt: Format, target: str, output: Path, options: Any,
                     progress: Callable[[str], None] | None = None) -> Any:
    """Convert ``source`` to a PyTorch artifact and verify it; returns ``converter.pipeline.ConversionResult``.

    Tries the routes of ``plan_routes`` in order and keeps the first whose result verifies; the report lists every
    route tried and why it was not kept. A route that fails is not published unless it is the last one and
    ``--force`` was given.
    """
    import time

    from converter.pipeline import _Clock, _workdir
    from converter.result import RouteAttempt
    from converter.to_torch.routes import KERAS_NATIVE, plan_routes

    target = "pt2" if target == "torch" else target
    if target not in SUFFIX:
        raise CrossportError(f"{source}: {fmt.value} -> {target} is not a supported route")
    if options.emit_source:
        emit_dir = Path(options.emit_source)
        if emit_dir.exists() and (not emit_dir.is_dir() or any(emit_dir.iterdir())) and not options.force:
            raise OutputError(f"{emit_dir}: already exists; pass --force to replace it")
    plan = plan_routes(options.route, fmt, target, bool(options.emit_source), source)
    if not plan.order:
        raise CrossportError(f"{source}: {fmt.value} -> {target} is not a supported route")
    clock = _Clock(progress)
    tol = Tolerance(options.atol, options.rtol)
    attempts: list[RouteAttempt] = list(plan.skipped)
    forced_route = options.route != "auto"
    with _workdir(output.parent if output.parent.exists() else Path.cwd()) as tmp:
        keras_src = _load_keras(source, options, clock) if fmt in (Format.KERAS, Format.H5) else None
        kept = None
        for k, route in enumerate(plan.order):
            last = k == len(plan.order) - 1
            t0 = time.perf_counter()
            route_tmp = tmp / route
            route_tmp.mkdir()
            try:
                if route == KERAS_NATIVE:
                    from converter.to_torch.native import convert_native

                    result = convert_native(keras_src, source, fmt, target, output, options, clock, tol, route_tmp,
                                            may_force=last)
                else:
                    result = _convert_onnx_route(source, fmt, target, output, options, clock, tol, route_tmp,
                                                 keras_src, may_force=last)
            except Exception as err:  # noqa: BLE001 - in auto mode any route failure moves on to the next route
                if forced_route or last and kept is None or not _may_fall_back(err):
                    if attempts:
                        _annotate(err, attempts)
                    raise
                attempts.append(RouteAttempt(route, "rejected", _reason(err), time.perf_counter() - t0))
                continue
            passed = result.report.passed or not result.report.verified
            outcome = "used" if passed else "failed verification"
            reason = "" if passed else _failed_reason(result.report)
            attempts.append(RouteAttempt(route, outcome, reason, time.perf_counter() - t0))
            kept = result
            if passed or last:
                break
        report = replace(kept.report, route_attempts=tuple(attempts), timings=dict(clock.timings))
        if plan.basis:
            report = replace(report, notes=(*report.notes, plan.basis))
        if report.verified and not report.passed and len(attempts) > 1:
            report = replace(report, notes=(*report.notes, "no route verified; the report shows the last one tried"))
        if options.report_path:
            report.write(Path(options.report_path))
        return replace(kept, report=report)


def _may_fall_back(err: BaseException) -> bool:
    """Errors that another route may not hit; an unsafe load or an unwritable output ends every route."""
    from converter.errors import InputPathError, UnsafeLoadError

    return not isinstance(err, (UnsafeLoadError, OutputError, InputPathError, KeyboardInterrupt))


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else type(err).__name__
    return first if isinstance(err, CrossportError) else f"{type(err).__name__}: {first}"


def _failed_reason(report: Any) -> str:
    hop = report.failed_hop
    if hop is None:
        return "verification did not complete"
    if hop.error:
        return f"hop {hop.name}: {hop.error}"
    worst = max((o.max_abs_error for o in hop.outputs), default=float("nan"))
    return f"hop {hop.name}: max abs error {worst:.3g} > tolerance"


def _annotate(err: BaseException, attempts: list[Any]) -> None:
    """Say which routes were tried before this error ended the conversion (the CLI prints the error's text)."""
    tried = "; ".join(a.describe() for a in attempts)
    if isinstance(err, CrossportError) and err.args:
        err.args = (f"{err.args[0]} [routes tried before: {tried}]", *err.args[1:])


def _convert_onnx_route(source: str, fmt: Format, target: str, output: Path, options: Any, clock: Any,
                        tol: Tolerance, tmp: Path, keras_src: KerasSource | None, may_force: bool) -> Any:
    """The ``onnx`` route: source -> ONNX -> onnx2torch -> artifact."""
    from converter.pipeline import ConversionResult, _publish, _versions

    if keras_src is not None:
        src = _keras_onnx_source(keras_src, tmp, clock)
    elif fmt == Format.SAVED_MODEL:
        src = _load_saved_model_source(source, options, tmp, clock)
    elif fmt == Format.ONNX:
        src = _load_onnx_source(source, options, tmp, clock)
    else:
        raise CrossportError(f"{source}: {fmt.value} -> {target} is not a supported route")
    return _finish(source, fmt, target, output, options, clock, tol, tmp, src, ConversionResult, _publish,
                   _versions, may_force)


def _finish(source: str, fmt: Format, target: str, output: Path, options: Any, clock: Any, tol: Tolerance,
            tmp: Path, src: LoadedSource, ConversionResult: Any, publish: Any, versions: Any,
            may_force: bool = True) -> Any:
    import torch

    from converter.parity.runners import OnnxRunner, TorchRunner
    from converter.to_torch import artifacts
    from converter.to_torch.modules import ChannelsFirst
    from converter.to_torch.trainable import assign_trainable

    notes = list(src.notes)
    hops: list[HopResult] = []
    cache: dict = {}  # each model runs once per input set across the hops (runners stay alive meanwhile)
    sets = make_input_sets(list(src.specs), seed=options.seed, dynamic_batch=src.dynamic_batch)
    out_names = list(src.output_names)
    onnx_runner = OnnxRunner(src.onnx_path, src.layouts, ())
    try:
        probe = onnx_runner.run(sets[0].arrays)
    except Exception as err:  # noqa: BLE001 - onnxruntime's own error types; the exporter's graph is at fault
        line = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise UnsupportedError(f"the ONNX graph from {src.exporter} does not run in onnxruntime: {line}") from err
    static_sets = make_input_sets(list(src.specs), seed=options.seed, dynamic_batch=False)
    onnx_runner.output_layouts = (src.runner.output_layouts if src.runner is not None
                                  else tuple(Layout.NONE for _ in probe))
    route = [fmt.value, f"onnx ({src.exporter}, opset {src.opset})"]
    if src.runner is not None and options.verify:
        with clock.step("verify", "verifying source vs ONNX (onnxruntime)"):
            hops.append(as_intermediate(run_hop(src.runner, onnx_runner, sets, src.layouts, out_names, tol, cache)))
    reference = src.runner or onnx_runner

    with clock.step("onnx2torch", "simplifying ONNX (onnxsim) and converting with onnx2torch"):
        conv, batch_dynamic = _convert_module(src, sets, notes)
        weights_ref, always = src.trainable_reference, ()
        if weights_ref is None:  # the source does not say: genuine weights by their ONNX consumers
            import onnx

            from converter.to_torch.modules import OnnxGRU, OnnxLSTM
            from converter.to_torch.onnx_weights import weight_reference

            weights_ref, always = weight_reference(onnx.load(str(src.onnx_path))), (OnnxLSTM, OnnxGRU)
        summary = assign_trainable(conv.module, weights_ref, always)
    route.append("onnxsim -> onnx2torch (+ crossport converters)")
    module: Any = conv.module
    in_nhwc = tuple(l == Layout.NHWC for l in src.layouts)
    out_nhwc = tuple(l == Layout.NHWC for l in onnx_runner.output_layouts)
    if options.nchw:
        module = ChannelsFirst(module, in_nhwc, out_nhwc)
        notes.append("--nchw: rank-4 inputs/outputs are NCHW; the NHWC<->NCHW permutes are part of the model")
    t_in = tuple(Layout.NCHW if options.nchw and f else l for l, f in zip(src.layouts, in_nhwc))
    t_out = tuple(Layout.NCHW if options.nchw and f else l for l, f in zip(onnx_runner.output_layouts, out_nhwc))
    torch_runner = TorchRunner(module, t_in, t_out, name="pytorch (converted)")
    if options.verify:
        with clock.step("verify", "verifying ONNX vs the converted PyTorch module"):
            hops.append(as_intermediate(run_hop(onnx_runner, torch_runner, sets if batch_dynamic else static_sets,
                                                src.layouts, out_names, tol, cache)))

    from converter.layout import to_layout

    example = [torch.from_numpy(np.ascontiguousarray(to_layout(a, l, tl)))
               for a, l, tl in zip(sets[0].arrays, src.layouts, t_in)]
    artifact_tmp = tmp / f"model{SUFFIX[target]}"
    dynamic_out = False
    target_runner = None
    # Intermediate hops only localize: the file is written and judged end to end (source vs reloaded file).
    with clock.step("save", f"writing {target} ({'torch.export' if target == 'pt2' else 'torch.jit.trace'})"):
        if target == "pt2":
            saved = artifacts.save_pt2(module, example, artifact_tmp, batch_dynamic)
        else:
            saved = artifacts.save_torchscript(module, example, artifact_tmp)
    notes.extend(saved.notes)
    # a traced TorchScript file is checked on both batch sizes below; that is what makes it "dynamic"
    dynamic_out = saved.dynamic_batch or (target == "torchscript" and batch_dynamic)
    route.append("torch.export (.pt2)" if target == "pt2" else "torchscript (torch.jit.trace)")
    if options.verify:
        with clock.step("verify", f"reloading the {target} file with plain torch and verifying it"):
            reloaded = artifacts.load_artifact(artifact_tmp, target)
            target_runner = TorchRunner(reloaded, t_in, t_out, name=f"pytorch ({target} file)")
            run_sets = sets if dynamic_out or (target != "pt2" and batch_dynamic) else static_sets
            hops.append(run_hop(reference, target_runner, run_sets, src.layouts, out_names, tol, cache))
    emitted = None
    if options.emit_source and (target_runner is not None or not options.verify):
        emitted = _emit(module, example, batch_dynamic, tmp, source, src, t_in, t_out, options, clock, notes)
        if options.verify:
            with clock.step("verify", "verifying the emitted model.py + weights.pt"):
                from converter.to_torch.source import load_emitted

                runner = TorchRunner(load_emitted(emitted), t_in, t_out, name="pytorch (emitted model.py)")
                hops.append(run_hop(reference, runner, sets if dynamic_out else static_sets, src.layouts,
                                    out_names, tol, cache))
    verified = options.verify
    passed = verified and verdict(hops) and target_runner is not None
    trainable = {"pytorch": summary.trainable}
    label = "keras" if fmt in (Format.KERAS, Format.H5) else fmt.value
    if src.trainable_reference is None:
        label = f"{label} (weights by ONNX consumer)"
    trainable[label] = source_count = int(sum(int(np.prod(w.shape)) for w in weights_ref))
    if source_count != summary.trainable:
        why = ("an ONNX LSTM's two biases are one parameter in PyTorch" if always else
               "an exporter folded or dropped weights")
        notes.append(f"trainable parameter counts differ: source {source_count:,}, PyTorch {summary.trainable:,} "
                     f"({why})")
    written = (passed or not verified or options.force and may_force) and artifact_tmp.exists()
    if written:
        publish(artifact_tmp, output, options.force)
        if emitted is not None:
            _publish_dir(emitted, Path(options.emit_source))
            notes.append(f"wrote {options.emit_source}/model.py and weights.pt (plain nn.Module + state_dict)")
    layout_note = ("layout: the PyTorch model keeps the source's NHWC for image tensors; pass --nchw for "
                   "channels-first" if any(in_nhwc) and not options.nchw else "")
    if layout_note:
        notes.append(layout_note)
    in_infos, out_infos = _tensor_infos(src, hops, out_names, onnx_runner.output_layouts, t_in, t_out, dynamic_out)
    report = ConversionReport(
        source=source, source_format=fmt.value, target=target, output=str(output) if written else None,
        route=tuple(route), opset=src.opset, exporter=src.exporter, inputs=in_infos, outputs=out_infos,
        dynamic_batch=dynamic_out, verified=verified, passed=passed,
        forced=written and verified and not passed, hops=tuple(hops),
        input_sets=tuple(s.describe() for s in sets) if verified else (), atol=options.atol, rtol=options.rtol,
        timings=dict(clock.timings),
        versions=versions(("crossport", "torch", "onnx", "onnxruntime", "onnx2torch", "onnxsim", "tf2onnx",
                           "tensorflow", "keras", "numpy")),
        trainable_params=trainable, notes=tuple(notes), route_name="onnx",
    )
    return ConversionResult(output if written else None, report)


def _emit(module: Any, example: Sequence[Any], dynamic: bool, tmp: Path, source: str, src: LoadedSource,
          t_in: tuple[Layout, ...], t_out: tuple[Layout, ...], options: Any, clock: Any, notes: list[str]) -> Path:
    """Readable model.py from the fx graph; the ATen listing of the ExportedProgram when that is not possible."""
    from converter.to_torch import artifacts
    from converter.to_torch.modules import ChannelsFirst
    from converter.to_torch.readable import NotReadable
    from converter.to_torch.source import emit_aten_source, emit_readable_source

    layouts = ", ".join(l.value for l in t_in)
    names, outs = [s.name for s in src.specs], list(src.output_names)
    directory = tmp / "emitted_source"
    with clock.step("emit-source", "writing model.py + weights.pt"):
        inner, in_flags, out_flags = module, (), ()
        if isinstance(module, ChannelsFirst):
            inner, in_flags, out_flags = module.inner, module.inputs_nhwc, module.outputs_nhwc
        try:
            out = emit_readable_source(inner, directory, source, names, outs, layouts, src.layer_names, in_flags,
                                       out_flags)
            return out.directory
        except NotReadable as err:
            import shutil

            shutil.rmtree(directory, ignore_errors=True)
            notes.append(f"--emit-source: model.py lists the ATen graph, not nn layers ({err})")
        program, _, export_notes = artifacts.export_program(module, example, dynamic)
        out = emit_aten_source(program, directory, source, names, outs, layouts)
    notes.extend(n for n in export_notes if n not in notes)
    return out.directory


def _publish_dir(tmp_dir: Path, target: Path) -> None:
    """Move the emitted source directory into place (replacing it only under --force, checked earlier)."""
    import shutil

    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp_dir), str(target))


def _tensor_infos(src: LoadedSource, hops: list[HopResult], out_names: list[str], out_layouts: tuple[Layout, ...],
                  t_in: tuple[Layout, ...], t_out: tuple[Layout, ...],
                  dynamic: bool) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """What the report says about each input/output: shape (None = dynamic batch), dtype, layout in -> out."""
    ins = tuple(TensorInfo(s.name, (None, *s.shape[1:]) if dynamic else s.shape, s.dtype, l.value, tl.value)
                for s, l, tl in zip(src.specs, src.layouts, t_in))
    first = next((h for h in hops if h.outputs), None)
    outs = []
    for k, name in enumerate(out_names):
        shape: tuple = tuple(first.outputs[k].reference_shape) if first and k < len(first.outputs) else ()
        if dynamic and shape:
            shape = (None, *shape[1:])
        lay = out_layouts[k] if k < len(out_layouts) else Layout.NONE
        outs.append(TensorInfo(name, shape, "float32", lay.value, (t_out[k] if k < len(t_out) else lay).value))
    return ins, tuple(outs)
