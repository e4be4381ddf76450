"""The PyTorch half of a PyTorch -> TensorFlow conversion: load the file, check it runs, export ONNX and record the
source model's outputs on every verification input set.

It is one step with one result (``TorchSide``) so that ``converter.conversion.sources`` can run it in a forked worker
(``converter.forked``) while the parent imports TensorFlow; the parent then needs no PyTorch at all -- the
reference outputs travel back as arrays and verification compares against them (``RecordedRunner``).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from converter.errors import ShapeError, UnsupportedError, described
from converter.formats import Format, load_torch_source
from converter.model_checks import raise_if_nonfinite, torch_nonfinite
from converter.layout import Layout
from converter.parity.inputs import InputSet, InputSpec, make_input_sets, quality_sets, same_feeds
from converter.result import OVERLAPPED

if TYPE_CHECKING:
    from converter.conversion.job import Clock, ConvertOptions

FORCE_HINT = ", or pass --force to convert it anyway"


@dataclass(frozen=True)
class TorchSide:
    """What the rest of the pipeline needs from PyTorch."""

    specs: tuple[InputSpec, ...]
    sets: tuple[InputSet, ...]
    layouts: tuple[Layout, ...]  # of the inputs, as the source takes them
    output_layouts: tuple[Layout, ...]
    outputs: tuple[tuple[np.ndarray, ...], ...]  # per input set; only the first when verification is off
    exported: Any  # converter.adapters.torch_onnx.ExportResult
    parameter_names: frozenset[str]  # trainable parameter names: readable Keras weight names
    trainable: int | None  # elements in parameters that require grad
    notes: tuple[str, ...]
    timings: tuple[tuple[str, float], ...] = ()  # filled when the side ran in a worker
    latency: tuple[Any, ...] = ()  # the source's measured latency (converter.parity.latency.Latency), if timed
    module: Any = None  # the loaded model, in-process only (a worker cannot send it back)


@dataclass
class RecordedRunner:
    """The PyTorch source as verification sees it: outputs recorded per input set by ``prepare``. Feeds that were
    not recorded go to ``module`` when the side ran in-process; after a worker they are an error (the pipeline
    only ever feeds the recorded sets)."""

    recorded: tuple[tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]], ...]  # (feeds, outputs) pairs
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    module: Any = None
    name: str = "pytorch"

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        for given, outputs in self.recorded:
            if same_feeds(given, feeds):
                return [o.copy() for o in outputs]
        if self.module is None:
            raise RuntimeError("these inputs were not run by the PyTorch worker")
        from converter.parity.runners import TorchRunner

        return TorchRunner(self.module, self.input_layouts, self.output_layouts).run(feeds)


def runner_for(side: TorchSide) -> RecordedRunner:
    return RecordedRunner(tuple((s.arrays, o) for s, o in zip(side.sets, side.outputs)), side.layouts,
                          side.output_layouts, side.module)


def input_specs(source: Any, options: ConvertOptions, names: tuple[str, ...]) -> list[InputSpec]:
    """Inputs from ``--input-shape`` (by name or in order), else the file's record; each integer input gets its
    ``--int-range`` or the bound the model itself sets (an embedding's vocabulary, see ``embedding_bounds``)."""
    from converter.input_shapes import check_range_names, int_range_for

    given = list(options.input_shapes)
    recorded = dict(zip(source.input_names, source.example_dtypes))

    def dtype(name: str | None, k: int) -> str:
        if options.input_dtype:
            return options.input_dtype
        if name in recorded:
            return recorded[name]
        return source.example_dtypes[k] if k < len(source.example_dtypes) else "float32"

    if given:
        if any(n for n, _ in given) and names:
            by_name = {n: s for n, s in given}
            unknown = [n for n in by_name if n not in names]
            if unknown:
                raise ShapeError(f"--input-shape names {unknown} are not inputs of the model (inputs: {list(names)})")
            pairs = [(n, by_name[n], dtype(n, k)) for k, n in enumerate(names) if n in by_name]
        else:
            pairs = [(n or (names[i] if i < len(names) else f"input{i}" if len(given) > 1 else "input"), s,
                      dtype(n or (names[i] if i < len(names) else None), i)) for i, (n, s) in enumerate(given)]
    elif source.example_shapes:
        pairs = [(n, s, options.input_dtype or d)
                 for n, s, d in zip(source.input_names, source.example_shapes, source.example_dtypes)]
    else:
        raise ShapeError("the source does not record its input shapes; pass --input-shape, e.g. --input-shape "
                         "1x3x224x224")
    check_range_names(options.int_ranges, [n for n, _, _ in pairs])
    bounds = embedding_bounds(source.exported_program)
    return [InputSpec(n, tuple(s), d, int_range_for(n, options.int_ranges, bounds.get(n))) for n, s, d in pairs]


def embedding_bounds(program: Any) -> dict[str, tuple[int, int]]:
    """Inputs of an ExportedProgram that index an embedding table directly: ``[0, rows)``, so generated token ids
    stay in the vocabulary without a ``--int-range``."""
    if program is None:
        return {}
    import torch

    users = {s.arg.name for s in program.graph_signature.input_specs
             if s.kind == torch.export.graph_signature.InputKind.USER_INPUT}
    bounds: dict[str, tuple[int, int]] = {}
    for node in program.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.aten.embedding.default:
            continue
        weight, index = node.args[0], node.args[1]
        val = getattr(weight, "meta", {}).get("val")
        if getattr(index, "name", None) in users and val is not None and len(val.shape) == 2:
            rows = int(val.shape[0])
            lo, hi = bounds.get(index.name, (0, rows))
            bounds[index.name] = (lo, min(hi, rows))
    return bounds


def torch_layouts(specs: Sequence[InputSpec]) -> tuple[Layout, ...]:
    return tuple(Layout.NCHW if len(s.shape) == 4 else Layout.NCDHW if len(s.shape) == 5 else Layout.NONE
                 for s in specs)


def prepare(source: str, fmt: Format, options: ConvertOptions, onnx_path: Path, clock: Clock,
            external_data: bool = False, runs_beside_export: bool = False) -> TorchSide:
    """Load ``source``, run it once, export ``onnx_path`` and (when verifying) record its outputs on every set.
    ``external_data``: the ONNX file is intermediate, its weights may go to a ``.data`` file beside it.
    ``runs_beside_export``: this is the conversion's forked worker, so the source's runs go to a child process
    (``converter.conversion.beside_export``): beside the export for a large ExportedProgram, before it otherwise."""
    import contextlib

    from converter.memory import importing_frameworks

    # The forked worker exits after this conversion, so its read may go uncollected and frozen with the imports.
    with clock.step("load", f"loading {source}"), \
            importing_frameworks() if runs_beside_export else contextlib.nullcontext():
        with importing_frameworks():
            import torch

            if fmt == Format.EXPORTED_PROGRAM:  # its reader imports torch._dynamo (~1 s)
                import torch.export.pt2_archive._package  # noqa: F401

        threads = torch.get_num_threads()
        if runs_beside_export:  # nothing multi-threaded here before the runs' fork: no OpenMP pool to inherit
            torch.set_num_threads(1)
        torch.manual_seed(options.seed)
        src = load_torch_source(source, fmt, options.model_class, options.model_kwargs, options.trust_pickle,
                                options.weights_key)
    if not options.force:
        raise_if_nonfinite(source, torch_nonfinite(src.module), FORCE_HINT)
    if fmt == Format.EXPORTED_PROGRAM and src.dynamic_batch is False and not options.static_batch:
        with clock.step("dynamic-batch", "re-exporting the static-batch program with a dynamic batch"):
            src = _with_dynamic_batch(src)
    specs, sets, dynamic = sample_inputs(src, fmt, options)
    layouts = torch_layouts(specs)
    from converter.parity.runners import TorchRunner

    runner = TorchRunner(src.module, layouts, ())
    from converter.adapters import torch_onnx

    def export(n_outputs: int, output_names: Sequence[str]) -> Any:
        example = tuple(torch.from_numpy(a) for a in sets[0].arrays)
        return torch_onnx.export(
            src.exported_program if src.exported_program is not None else src.module, example, onnx_path,
            input_names=[s.name for s in specs], output_names=output_names, dynamic_batch=dynamic,
            is_torchscript=fmt == Format.TORCHSCRIPT, external_data=external_data, n_outputs=n_outputs,
        )

    def run_here(in_child: bool = False) -> list[tuple[np.ndarray, ...]]:
        """The sets in order; ``in_child`` (a forked child that ends after them): the sets that are not timed run
        with their large blocks mapped (``memory.large_blocks_mapped``), the timed one from the heap as usual."""
        from converter.memory import large_blocks_mapped
        from converter.parity.latency import latency_set

        timed = latency_set(sets) if options.verify and options.latency_runs > 0 else None

        def run(s: InputSet, call: Any) -> tuple[np.ndarray, ...]:
            with large_blocks_mapped() if in_child and s is not timed else contextlib.nullcontext():
                return tuple(call(s))

        with clock.step("check-inputs", "running the source model once"):
            outputs = [run(sets[0], lambda s: run_once(runner, s))]
        if options.verify:
            with clock.step("verify", "running the source model on the verification inputs"):
                outputs.extend(run(s, lambda s: runner.run(s.arrays)) for s in sets[1:])
        return outputs

    def time_source() -> tuple[Any, ...]:
        if not options.verify or options.latency_runs <= 0:
            return ()
        from converter.parity.latency import latency_set, measure

        timed_set = latency_set(sets)
        with clock.step("latency", "timing the source model"):
            return (measure(runner, timed_set.arrays, layouts, timed_set.label, "source", options.latency_runs,
                            options.latency_budget_s, warm=warm),)

    def runs_and_latency() -> tuple[list[tuple[np.ndarray, ...]], tuple[Any, ...], Any]:
        """The runs, then the source timed while the timed set's activations are still in the allocator's free lists
        (after the export they were fresh pages on top of its memory: EfficientNet-B0 +17 MB at the conversion's
        peak)."""
        before = dict(clock.timings)
        outputs = run_here(in_child=True)
        latency = time_source()
        return outputs, latency, (runner.output_names,
                                  {k: v - before.get(k, 0.0) for k, v in clock.timings.items()})

    from converter.conversion import beside_export

    # Not with quantization's quality sets (32 more rows): on one thread they would outlast the export.
    beside = runs_beside_export and not options.quant_mode and beside_export.pays_off(src.exported_program)
    planned = beside_export.planned_outputs(src.exported_program) if beside else None
    warm = planned is None  # the runs below happen in this process, so the latency needs no warm-up call
    if planned is not None:
        child = beside_export.start_source_runs(runner, sets, options.verify, run_once)
        torch.set_num_threads(threads)
        with clock.step("export-onnx", "exporting to ONNX (torch.onnx.export) beside the source model's runs"):
            exported = beside_export.export_beside(child, lambda: export(*planned))
        with clock.step("verify", "waiting for the source model's runs on the verification inputs"):
            done = beside_export.collect(child)
        if done is None:  # the child stalled: the runs, here
            warm = True
            outputs = run_here()
        else:
            outputs, runner.output_names, first_s, rest_s = done
            clock.timings["check-inputs" + OVERLAPPED] = first_s
            clock.timings["verify" + OVERLAPPED] = rest_s
        probe = list(outputs[0])
        if (len(probe), tuple(runner.output_names)) != (planned[0], tuple(planned[1])):
            with clock.step("export-onnx", "exporting again with the outputs the source returned"):
                exported = export(len(probe), runner.output_names)
        latency = time_source()
    else:  # the runs first (the export takes the number of outputs from them), the batch-1 set last
        done = beside_export.runs_before_export(runs_and_latency, threads) \
            if runs_beside_export else None
        if done is None:  # not the worker, or its child stalled
            torch.set_num_threads(threads)
            outputs, latency, _ = runs_and_latency()
            from converter.memory import trim_heap

            trim_heap()  # the activations: the export's Python objects would not reuse those blocks
        else:
            outputs, latency, (runner.output_names, timings) = done
            for key, seconds in timings.items():
                clock.timings[key] = clock.timings.get(key, 0.0) + seconds
        probe = list(outputs[0])
        with clock.step("export-onnx", "exporting to ONNX (torch.onnx.export)"):
            exported = export(len(probe), runner.output_names)
    names, trainable = parameters(src.module)
    return TorchSide(specs=tuple(specs), sets=tuple(sets), layouts=layouts, latency=latency,
                     output_layouts=tuple(Layout.NCHW if o.ndim == 4 else Layout.NONE for o in probe),
                     outputs=tuple(outputs), exported=exported, parameter_names=names, trainable=trainable,
                     notes=tuple(src.notes), module=src.module)


def sample_inputs(src: Any, fmt: Format, options: ConvertOptions) -> tuple[list[InputSpec], list[InputSet], bool]:
    """The input specs, the seeded verification sets and whether the batch stays dynamic (an ExportedProgram
    with a fixed batch keeps it fixed; a size-1 batch is traced at 2, which torch.export would specialise)."""
    specs = input_specs(src, options, src.input_names)
    dynamic = (not options.static_batch) and (src.dynamic_batch is not False or fmt != Format.EXPORTED_PROGRAM)
    if fmt == Format.EXPORTED_PROGRAM and src.dynamic_batch is False:
        dynamic = False
    trace_specs = [replace(s, shape=(max(2, s.shape[0]), *s.shape[1:])) if dynamic and s.shape and s.shape[0] == 1
                   else s for s in specs]
    first = trace_specs[0].shape[0] if trace_specs and trace_specs[0].shape else 1
    other = first + 1 if src.batch_min > 1 else None  # a program exported for batches from 2 up
    sets = make_input_sets(trace_specs, seed=options.seed, dynamic_batch=dynamic, other_batch=other)
    if options.quant_mode and options.verify:  # top-1 agreement needs more rows than the two default batches
        sets += quality_sets(trace_specs, options.seed, dynamic)
    return specs, sets, dynamic


def run_once(runner: Any, first: InputSet) -> list[np.ndarray]:
    """Run the source on the first set; a failure is the user's shapes (``ShapeError``), in one line."""
    try:
        return runner.run(first.arrays)
    except UnsupportedError:
        raise
    except Exception as err:  # noqa: BLE001 - user model code
        shapes = [list(a.shape) for a in first.arrays]
        raise ShapeError(f"the model does not run on inputs of shape {shapes} (check --input-shape): "
                         f"{described(err)}") from err


def _with_dynamic_batch(src: Any) -> Any:
    """An ExportedProgram saved with a fixed batch, re-exported from ``ep.module()`` with a dynamic one when that
    computes the same (``converter.adapters.torch_export``); otherwise the source as it is, with the reason."""
    from converter.adapters.torch_export import with_dynamic_batch

    batch = src.example_shapes[0][0] if src.example_shapes and src.example_shapes[0] else None
    redone = with_dynamic_batch(src.exported_program, src.example_shapes, src.example_dtypes)
    if redone.program is None:
        note = (f"the .pt2 was exported with a fixed batch of {batch} and stays so: {redone.reason}; re-export it "
                "with dynamic_shapes={0: torch.export.Dim('batch')} for a dynamic batch")
        return replace(src, notes=(*src.notes, note))
    note = (f"the .pt2 was exported with a fixed batch of {batch}; re-exported from ep.module() with a dynamic "
            f"batch ({redone.replaced} shape argument(s) now follow x.size(0)), checked against the original")
    return replace(src, module=redone.program.module(), exported_program=redone.program, dynamic_batch=True,
                   notes=(*src.notes, note))


def parameters(module: Any) -> tuple[frozenset[str], int | None]:
    if module is None or not hasattr(module, "named_parameters"):
        return frozenset(), None
    try:
        params = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
    except Exception:  # noqa: BLE001 - a ScriptModule may refuse
        return frozenset(), None
    return frozenset(n for n, _ in params), int(sum(p.numel() for _, p in params))
