"""The ``onnx`` route to PyTorch: source -> ONNX (tf2onnx, or the file itself) -> onnxsim -> onnx2torch ->
``.pt2`` / TorchScript (and ``--emit-source``), verified hop by hop.

Works for every source format; the only route for SavedModel/ONNX sources, TorchScript and ``--emit-source``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np

from converter import contract
from converter.conversion.job import Clock, ConversionResult, ConvertOptions, Job, publish_dir
from converter.conversion.keras_sources import (KerasSource, LoadedSource, keras_onnx_source,
                                             load_onnx_source, load_saved_model_source)
from converter.conversion.ledger import Ledger, tensor_infos
from converter.errors import CrossportError, UnsupportedError
from converter.formats import Format
from converter.layout import Layout
from converter.memory import release_memory
from converter.parity.inputs import InputSet, make_input_sets
from converter.parity.report import as_intermediate, run_hop, verdict

if TYPE_CHECKING:
    import torch

SUFFIX = {"pt2": ".pt2", "torchscript": ".pt", "aoti": ".pt2", "executorch": ".pte"}
VERSIONS = ("crossport", "torch", "onnx", "onnxruntime", "onnx2torch", "onnxsim", "tf2onnx", "tensorflow", "keras",
            "numpy")


@dataclass(frozen=True)
class OnnxRoute:
    name: ClassVar[str] = "onnx"

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        if fmt not in (Format.KERAS, Format.H5, Format.SAVED_MODEL, Format.ONNX):
            return f"the onnx route reads Keras, SavedModel and ONNX sources; the source is {fmt.value}"
        return ""

    def preload(self) -> None:
        """What this route imports after the ONNX export (``converter.conversion._import_frameworks``)."""
        import onnx2torch  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxsim  # noqa: F401
        import torch  # noqa: F401

    def run(self, keras_src: KerasSource | None, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        if keras_src is not None:
            src = job.shared("onnx-route-source", lambda tmp: keras_onnx_source(keras_src, tmp, job.clock))
        elif job.fmt == Format.SAVED_MODEL:
            src = job.shared("onnx-route-source",
                             lambda tmp: load_saved_model_source(job.source, job.options, tmp, job.clock))
        elif job.fmt == Format.ONNX:
            src = job.shared("onnx-route-source", lambda tmp: load_onnx_source(job.source, job.options, tmp, job.clock))
        else:
            raise CrossportError(f"{job.source}: {job.fmt.value} -> {job.target} is not a supported route")
        made_by = job.reused("onnx-route-source")
        if made_by:
            ledger.notes.append(f"source exported to ONNX once, while converting to {made_by}; its timings are in "
                                "that report")
        return _finish(src, job, ledger, last)


def _finish(src: LoadedSource, job: Job, ledger: Ledger, may_force: bool) -> ConversionResult:
    """Hops: source vs onnxruntime; onnxruntime vs the converted module; source vs the reloaded file (decisive);
    source vs the emitted ``model.py`` when asked for."""
    source, fmt, target, options, clock, tol, tmp = (job.source, job.fmt, job.target, job.options, job.clock,
                                                     job.tol, job.tmp)
    import torch

    from converter.parity.runners import OnnxRunner, TorchRunner
    from converter.parity.isolated import deploy_runner
    from converter.conversion import deploy
    from converter.to_torch import artifacts
    from converter.to_torch.modules import ChannelsFirst, OnnxGRU, OnnxLSTM
    from converter.to_torch.trainable import assign_trainable

    notes, hops, cache = ledger.notes, ledger.hops, ledger.run_cache
    notes.extend(src.notes)
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
    route = ledger.route
    route[:] = [fmt.value, f"onnx ({src.exporter}, opset {src.opset})"]
    if src.runner is not None and options.verify:
        with clock.step("verify", "verifying source vs ONNX (onnxruntime)"):
            hops.append(as_intermediate(run_hop(src.runner, onnx_runner, sets, src.layouts, out_names, tol, cache)))
    reference = src.runner or onnx_runner

    with clock.step("onnx2torch", "simplifying ONNX (onnxsim) and converting with onnx2torch"):
        conv, batch_dynamic = _convert_module(src, sets, notes)
        # recurrent modules keep their own trainable flags (PyTorch's LSTM has a second bias, frozen at zero)
        always = (torch.nn.LSTM, torch.nn.GRU, OnnxLSTM, OnnxGRU)
        weights_ref = src.trainable_reference
        if weights_ref is None:  # the source does not say: genuine weights by their ONNX consumers
            import onnx

            from converter.to_torch.onnx_weights import weight_reference

            weights_ref = weight_reference(onnx.load(str(src.onnx_path)))
        summary = assign_trainable(conv.module, weights_ref, always)
        recurrent = any(isinstance(m, always) for m in conv.module.modules())
    route.append("onnxsim -> onnx2torch (+ crossport converters)")
    module = conv.module
    in_nhwc = tuple(l == Layout.NHWC for l in src.layouts)
    out_nhwc = tuple(l == Layout.NHWC for l in onnx_runner.output_layouts)
    if not options.nchw:
        from converter.to_torch.optimize import channels_last_weights

        channels_last_weights(module)
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
    how = {"pt2": "torch.export", "torchscript": "torch.jit.trace"}.get(target, f"torch.export, {target}")
    with clock.step("save", f"writing {target} ({how})"):
        if target == "pt2":
            saved = artifacts.save_pt2(module, example, artifact_tmp, batch_dynamic)
        elif target in deploy.ROUTE_STEP:
            saved = deploy.save(module, example, artifact_tmp, batch_dynamic, target)
        else:
            saved = artifacts.save_torchscript(module, example, artifact_tmp)
    notes.extend(saved.notes)
    # a traced TorchScript file is checked on both batch sizes below; that is what makes it "dynamic"
    dynamic_out = saved.dynamic_batch or (target == "torchscript" and batch_dynamic)
    route.append({"pt2": "torch.export (.pt2)", "torchscript": "torchscript (torch.jit.trace)"}.get(
        target, f"torch.export -> {deploy.ROUTE_STEP.get(target, target)}"))
    if options.verify:
        run_sets = sets if dynamic_out else static_sets
        if target in deploy.ROUTE_STEP:
            with clock.step("verify", f"loading the {target} artifact in its runtime (fresh process) and verifying it"):
                target_runner = deploy_runner(artifact_tmp, target, t_in, t_out)
                try:
                    hops.append(run_hop(reference, target_runner, run_sets, src.layouts, out_names, tol, cache))
                    ledger.time_runner(job, reference, run_sets, src.layouts, "source")
                    ledger.time_runner(job, target_runner, run_sets, src.layouts, "artifact")
                finally:
                    target_runner.close()
        else:
            with clock.step("verify", f"reloading the {target} file with plain torch and verifying it"):
                reloaded = artifacts.load_artifact(artifact_tmp, target)
                target_runner = TorchRunner(reloaded, t_in, t_out, name=f"pytorch ({target} file)")
                hops.append(run_hop(reference, target_runner, run_sets, src.layouts, out_names, tol, cache))
            ledger.time_runner(job, reference, run_sets, src.layouts, "source")
            ledger.time_runner(job, target_runner, run_sets, src.layouts, "artifact")
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
        why = ("an ONNX LSTM's two biases are one parameter in PyTorch" if recurrent else
               "an exporter folded or dropped weights")
        notes.append(f"trainable parameter counts differ: source {source_count:,}, PyTorch {summary.trainable:,} "
                     f"({why})")
    written = (passed or not verified or options.force and may_force) and artifact_tmp.exists()
    in_infos, out_infos = tensor_infos(src.specs, src.layouts, t_in, out_names, onnx_runner.output_layouts,
                                       [l.value for l in t_out], hops, dynamic_out)
    if written:
        note = job.publish(artifact_tmp, contract.from_infos(in_infos, out_infos, route, src.opset, source))
        notes.extend([note] if note else [])
        if emitted is not None:
            publish_dir(emitted, Path(options.emit_source))
            notes.append(f"wrote {options.emit_source}/model.py and weights.pt (plain nn.Module + state_dict)")
    layout_note = ("layout: the PyTorch model keeps the source's NHWC for image tensors; pass --nchw for "
                   "channels-first" if any(in_nhwc) and not options.nchw else "")
    if layout_note:
        notes.append(layout_note)
    report = ledger.report(job, sets=sets, passed=passed, written=written, opset=src.opset, exporter=src.exporter,
                           inputs=in_infos, outputs=out_infos, dynamic_batch=dynamic_out, trainable=trainable,
                           version_of=VERSIONS, route_name=OnnxRoute.name)
    return ConversionResult(job.output if written else None, report)


def _emit(module: torch.nn.Module, example: Sequence[torch.Tensor], dynamic: bool, tmp: Path, source: str, src: LoadedSource,
          t_in: tuple[Layout, ...], t_out: tuple[Layout, ...], options: ConvertOptions, clock: Clock, notes: list[str]) -> Path:
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


def _convert_module(src: LoadedSource, sets: Sequence[InputSet], notes: list[str]) -> tuple[Any, bool]:
    """onnxsim + onnx2torch, keeping the batch symbolic; when the graph's shape arithmetic cannot be made
    symbolic, fold again at the sample shapes (the batch is then fixed) so that torch.export can trace it."""
    import torch

    from converter.adapters import onnx2torch_adapter

    fixed = {s.name: s.shape for s in src.specs}
    release_memory()  # the verification just ran the source and onnxruntime on a few batches
    if src.dynamic_batch:
        simplified, sim_notes = onnx2torch_adapter.simplify(src.onnx_path, fixed)
        release_memory()
        examples = [tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in s.arrays) for s in sets[:2]]
        conv = _optimized(onnx2torch_adapter.convert(simplified, examples))
        del simplified
        release_memory()
        if not conv.runtime_shapes and not sim_notes:
            notes.extend(conv.notes)
            return conv, True
        notes.append(f"the graph computes shapes from the batch size ({'; '.join(conv.notes)}); folded at batch "
                     f"{src.specs[0].shape[0]}, so the PyTorch batch is fixed")
        del conv
    simplified, _ = onnx2torch_adapter.simplify(src.onnx_path, fixed, force_fixed=True)
    release_memory()
    conv = _optimized(onnx2torch_adapter.convert(simplified))
    del simplified
    release_memory()
    notes.extend(conv.notes)
    return conv, False


def _optimized(conv: Any) -> Any:
    """The graph passes that make the module run like the same architecture written in PyTorch."""
    from converter.to_torch.fuse import fuse_gelu, fuse_layer_norm, fuse_matmul_bias, fuse_silu
    from converter.to_torch.optimize import fold_pads, inplace_activations

    fold_pads(conv.module)
    inplace_activations(conv.module)
    fuse_gelu(conv.module)
    fuse_silu(conv.module)
    fuse_matmul_bias(conv.module)
    fuse_layer_norm(conv.module)
    return conv
