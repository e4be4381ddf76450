"""Plan a route from the source format to the target format and run it hop by hop, verifying each hop.

Route for PyTorch sources: torch.onnx.export -> ONNX (checked with onnxruntime) -> crossport's Keras 3 builder
(-> ``.keras`` / SavedModel / ``.tflite``). Everything is written in a private temporary directory beside the
output and moved into place only after verification passed (or with ``force``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from converter.errors import (CrossportError, InputPathError, ModelFileError, OutputError, ShapeError,
                              UnsupportedError)
from converter.formats import (TARGET_SUFFIXES, TARGETS, Format, check_onnx_ops, keras_file_nonfinite,
                               onnx_nonfinite, raise_if_nonfinite, sniff)
from converter.layout import Layout
from converter.memory import release_memory
from converter.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from converter.parity.inputs import InputSpec, make_input_sets
from converter.parity.report import HopResult, as_intermediate, run_hop, verdict
from converter.result import OVERLAPPED, ConversionReport, TensorInfo
from converter.torch_side import FORCE_HINT as _FORCE_HINT
from converter.torch_side import TorchSide, runner_for, torch_layouts
from converter.torch_side import prepare as prepare_torch_side

ProgressFn = Callable[[str], None]

_TARGET_DEFAULT_SUFFIX = {"keras": ".keras", "onnx": ".onnx", "tflite": ".tflite", "saved_model": "_saved_model",
                          "pt2": ".pt2", "torch": ".pt2", "torchscript": ".pt"}


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``convert`` needs besides the source; the CLI fills it from flags."""

    to: str | None = None
    output: str | None = None
    input_shapes: tuple[tuple[str | None, tuple[int, ...]], ...] = ()
    input_dtype: str = "float32"
    model_class: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    keep_layout: bool = False
    fp16: bool = False
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    verify: bool = True
    force: bool = False
    seed: int = 0
    static_batch: bool = False
    report_path: str | None = None
    route: str = "auto"  # "builder" (crossport's Keras 3 builder), "onnx2tf", or "auto" (builder, else onnx2tf)
    nchw: bool = False  # torch targets: channels-first inputs/outputs, the permutation folded into the model
    trust_code: bool = False  # Keras sources: load with safe_mode=False (Lambda layers run code)
    emit_source: str | None = None  # torch targets: also write model.py + weights.pt to this directory
    manifest: bool = True  # write the report beside the output as <output>.crossport.json (verify reads layouts)


@dataclass(frozen=True)
class ConversionResult:
    artifact: Path | None
    report: ConversionReport

    @property
    def passed(self) -> bool:
        return self.report.passed


def resolve_target(options: ConvertOptions) -> str:
    if options.to:
        to = options.to.lower().replace("-", "_").replace("savedmodel", "saved_model")
        if to == "tf":
            to = "saved_model"
        if to not in TARGETS:
            raise CrossportError(f"--to {options.to!r}: expected one of {', '.join(TARGETS)}")
        return to
    if options.output:
        suffix = Path(options.output).suffix.lower()
        if suffix in TARGET_SUFFIXES and TARGET_SUFFIXES[suffix] in TARGETS:
            return TARGET_SUFFIXES[suffix]
        if suffix == "":
            return "saved_model"
        raise CrossportError(f"output {options.output!r}: cannot tell the target from suffix {suffix!r}; pass --to")
    raise CrossportError("no target: pass --to keras|saved_model|tflite|onnx or an output path with a known suffix")


def resolve_output(source: str, target: str, options: ConvertOptions) -> Path:
    if options.output:
        out = Path(options.output)
    else:
        stem = Path(source.split(":")[-1]).stem if ":" in source else Path(source).stem
        out = Path.cwd() / f"{stem}{_TARGET_DEFAULT_SUFFIX[target]}"
    if out.exists() and not options.force:
        raise OutputError(f"{out}: already exists; pass --force to replace it")
    if options.manifest:
        _check_manifest_slot(manifest_path(out), options.force)
    if out.exists() and out.is_dir() and target != "saved_model":
        raise OutputError(f"{out}: is a directory; a {target} output is a file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{parent}: output directory does not exist")
    if not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a directory; the output {out.name} cannot be written there")
    _probe_writable(parent)
    return out


def _probe_writable(directory: Path) -> None:
    """Create and remove a file: unlike ``os.access`` this also answers for root, read-only mounts and
    pseudo-filesystems, so an unwritable output is refused before minutes of conversion work."""
    try:
        with tempfile.NamedTemporaryFile(prefix=".crossport-probe-", dir=directory):
            pass
    except OSError as err:
        raise OutputError(f"{directory}: output directory is not writable ({err.strerror or err})") from err


def manifest_path(output: Path) -> Path:
    """``<output>.crossport.json``: where ``crossport verify`` looks for a candidate's layouts and route."""
    return Path(f"{str(output).rstrip('/')}.crossport.json")


def _check_manifest_slot(path: Path, force: bool) -> None:
    """Refuse to clobber a file at the manifest path unless it is a crossport report (or --force)."""
    if not path.exists() or force:
        return
    import json

    try:
        ours = json.loads(path.read_text()).get("kind", "").startswith("crossport.")
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputError(f"{path}: exists and is not a crossport report; move it, pass --no-manifest, or --force")


def _write_manifest(result: "ConversionResult") -> None:
    """Written after the model was published, through a temp file, so a manifest never describes a missing model."""
    if result.artifact is None:
        return
    path = manifest_path(result.artifact)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(result.report.to_json() + "\n")
    os.replace(tmp, path)


@contextmanager
def _workdir(near: Path) -> Iterator[Path]:
    """A private temp dir on the output's filesystem (so the final move is atomic), always removed."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".crossport-", dir=near))
    except OSError:
        tmp = Path(tempfile.mkdtemp(prefix="crossport-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Clock:
    def __init__(self, progress: ProgressFn | None) -> None:
        self.timings: dict[str, float] = {}
        self.progress = progress

    @contextmanager
    def step(self, key: str, message: str) -> Iterator[None]:
        if self.progress:
            self.progress(message)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0


def _versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out


def _publish(tmp_artifact: Path, output: Path, force: bool) -> None:
    if output.exists():
        if not force:
            raise OutputError(f"{output}: appeared while converting; pass --force to replace it")
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
    os.replace(tmp_artifact, output)


def convert(source: str, options: ConvertOptions | None = None, progress: ProgressFn | None = None,
            **overrides: Any) -> ConversionResult:
    """Convert ``source`` and verify the result; see ``ConvertOptions``. Keyword overrides update the options.

    Returns a result whose ``report.passed`` says whether every hop matched; raises ``CrossportError`` subclasses
    for problems with the input. Nothing is left at the output path unless verification passed or ``force``.
    """
    options = replace(options or ConvertOptions(), **overrides)
    if isinstance(options.input_shapes, dict):
        options = replace(options, input_shapes=tuple(options.input_shapes.items()))
    result = _convert(source, options, progress)
    if options.manifest:
        _write_manifest(result)
    return result


def _convert(source: str, options: ConvertOptions, progress: ProgressFn | None) -> ConversionResult:
    target = resolve_target(options)
    fmt = sniff(source)
    output = resolve_output(source, target, options)
    from converter.to_torch import convert_to_torch, is_torch_target

    if is_torch_target(target):
        if not options.force:
            _refuse_nonfinite_file(source, fmt)
        return convert_to_torch(source, fmt, target, output, options, progress)
    if fmt in (Format.KERAS, Format.H5, Format.SAVED_MODEL, Format.TFLITE):
        raise UnsupportedError(f"{source}: converting {fmt.value} sources is not supported yet; "
                               "crossport converts PyTorch and ONNX sources in this release")
    from converter.frameworks import tensorflow

    clock = _Clock(progress)
    with _workdir(output.parent if output.parent.exists() else Path.cwd()) as tmp:
        if fmt == Format.ONNX:
            return _convert_onnx_source(source, target, output, options, clock, tmp)
        side = _torch_side(source, fmt, target, options, tmp / "model.onnx", clock)
        runner = runner_for(side)
        return _finish_from_onnx(
            source=source, source_format=fmt.value, target=target, output=output, options=options, clock=clock,
            tmp=tmp, onnx_path=side.exported.path, specs=list(side.specs), sets=list(side.sets), source_runner=runner,
            source_layouts=side.layouts, exported=side.exported, parameter_names=side.parameter_names,
            torch_trainable=side.trainable, notes=side.notes,
            run_cache={(id(runner), id(s)): list(o) for s, o in zip(side.sets, side.outputs)},
        )


def _torch_side(source: str, fmt: Format, target: str, options: ConvertOptions, onnx_path: Path,
                clock: _Clock) -> TorchSide:
    """The PyTorch steps; for a TensorFlow target in a fresh process they run in a forked worker while this
    process imports TensorFlow/Keras (``converter.forked``: 2-3 s of the critical path on two cores)."""
    from converter import forked

    # The builder reads the intermediate ONNX with onnx.load, which follows a .data file; a published .onnx and
    # the onnx2tf route get a single file.
    external = target != "onnx" and options.route != "onnx2tf"
    if target == "onnx" or not forked.can_fork():
        return prepare_torch_side(source, fmt, options, onnx_path, clock, external_data=external)

    def work() -> TorchSide:
        child = _Clock(clock.progress)
        side = prepare_torch_side(source, fmt, options, onnx_path, child, external_data=external)
        return replace(side, module=None, timings=tuple(child.timings.items()))

    worker = forked.start(work)
    try:
        t0 = time.perf_counter()
        from converter.frameworks import keras as _keras

        _keras()
        clock.timings["import-tensorflow" + OVERLAPPED] = time.perf_counter() - t0
        side = worker.result()
    except BaseException:
        worker.kill()
        raise
    for key, seconds in side.timings:
        clock.timings[key] = clock.timings.get(key, 0.0) + seconds
    return side


def _convert_onnx_source(source: str, target: str, output: Path, options: ConvertOptions, clock: _Clock,
                         tmp: Path) -> ConversionResult:
    import onnx

    from converter.keras_builder.shapes import graph_inputs
    from converter.parity.runners import OnnxRunner

    with clock.step("load", f"loading {source}"):
        try:
            model = onnx.load(source)
            onnx.checker.check_model(model)
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"{source}: not a valid ONNX model ({str(err).splitlines()[0][:200]})") from err
    check_onnx_ops(model, source)
    if not options.force:
        raise_if_nonfinite(source, onnx_nonfinite(model), _FORCE_HINT)
    if target == "onnx":
        raise CrossportError("source and target are both ONNX; pick --to keras, saved_model or tflite")
    given = {n: s for n, s in options.input_shapes if n}
    unnamed = [s for n, s in options.input_shapes if not n]
    ginputs = graph_inputs(model, None if not options.input_shapes else
                           (given or {gi.name: s for gi, s in zip(graph_inputs_safe(model), unnamed)}))
    specs = [InputSpec(g.name, g.shape, str(g.dtype)) for g in ginputs]
    dynamic = any(g.batch_dynamic for g in ginputs) and not options.static_batch
    sets = make_input_sets(specs, seed=options.seed, dynamic_batch=dynamic)
    layouts = torch_layouts(specs)
    onnx_path = tmp / "model.onnx"
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
    from converter.routes.torch_onnx import ExportResult

    exported = ExportResult(onnx_path, "given", opset or 0, tuple(specs[i].name for i in range(len(specs))),
                            tuple(o.name for o in model.graph.output), dynamic)
    return _finish_from_onnx(source=source, source_format="onnx", target=target, output=output, options=options,
                             clock=clock, tmp=tmp, onnx_path=onnx_path, specs=specs, sets=sets, source_runner=None,
                             source_layouts=layouts, exported=exported, notes=(),
                             onnx_runner=runner)


def _save_onnx_copy(model: Any, path: Path) -> None:
    """Write the loaded model (``onnx.load`` already pulled in any external ``.data`` files) as one file;
    models past protobuf's 2 GB limit keep their tensors in one external file beside it."""
    import onnx

    if model.ByteSize() < (2**31 - 2**20):
        onnx.save(model, str(path))
    else:
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".data")




def _refuse_nonfinite_file(source: str, fmt: Format) -> None:
    """Keras/H5 and ONNX sources on the PyTorch route: scanned before the route loads them (h5py / protobuf only,
    no code from the file runs)."""
    if fmt in (Format.KERAS, Format.H5):
        raise_if_nonfinite(source, keras_file_nonfinite(source), _FORCE_HINT)
    elif fmt == Format.ONNX:
        import onnx

        try:
            model = onnx.load(source)
        except Exception:  # noqa: BLE001 - unreadable: the route reports it with its own message
            return
        check_onnx_ops(model, source)
        raise_if_nonfinite(source, onnx_nonfinite(model), _FORCE_HINT)


def graph_inputs_safe(model: Any) -> list[Any]:
    init = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in init]


def _unroll_steps(target: str, exported: Any) -> int:
    """How many fixed time steps the builder unrolls a recurrent layer over (BuildOptions.unroll_max_steps).

    TFLite's fused sequence kernel is faster than an unrolled loop, but with a dynamic batch the converter cannot
    lower Keras' TensorList loop to it and would need Select TF (Flex) ops, which neither LiteRT nor TF 2.21's
    Python interpreter runs: a dynamic-batch TFLite target is unrolled (fixed steps only) instead."""
    from converter.keras_builder import BuildOptions

    if target == "tflite" and not exported.dynamic_batch:
        return 0
    return BuildOptions.unroll_max_steps


def _finish_from_onnx(*, source: str, source_format: str, target: str, output: Path, options: ConvertOptions,
                      clock: _Clock, tmp: Path, onnx_path: Path, specs: list[InputSpec], sets: list[Any],
                      source_runner: Any, source_layouts: tuple[Layout, ...], exported: Any,
                      notes: tuple[str, ...], parameter_names: frozenset[str] = frozenset(),
                      torch_trainable: int | None = None, onnx_runner: Any = None,
                      run_cache: dict[tuple[int, int], Any] | None = None) -> ConversionResult:
    from converter.parity.runners import OnnxRunner

    tol = Tolerance(options.atol, options.rtol)
    hops: list[HopResult] = []
    run_cache = dict(run_cache or {})  # each model runs once per input set across the hops (and the probe)
    notes_l = list(notes)
    route = [source_format, f"onnx ({exported.exporter} exporter)" if source_runner else "onnx"]
    output_names = list(exported.output_names)
    if onnx_runner is None:
        onnx_runner = OnnxRunner(onnx_path, source_layouts, source_runner.output_layouts)
    if source_runner is not None and options.verify:
        with clock.step("verify", "verifying PyTorch vs ONNX (onnxruntime)"):
            hop = run_hop(source_runner, onnx_runner, sets, source_layouts, output_names, tol, run_cache)
            hops.append(hop if target == "onnx" else as_intermediate(hop))
        # Its outputs on every set are in run_cache now; the Keras build below would otherwise hold a second copy
        # of the weights in this session while it builds its own.
        onnx_runner.release()

    artifact_tmp = onnx_path
    target_runner = None
    built = None
    use_onnx2tf = options.route == "onnx2tf"
    if options.route not in ("auto", "builder", "onnx2tf"):
        raise CrossportError(f"--route {options.route!r}: expected auto, builder or onnx2tf")
    if use_onnx2tf and target == "keras":
        raise UnsupportedError("--route onnx2tf cannot produce a Keras 3 file (onnx2tf writes tf_keras models); "
                               "use the default route for .keras")
    if target != "onnx" and not use_onnx2tf:
        from converter.frameworks import keras as _keras

        with clock.step("import-tensorflow", "loading TensorFlow/Keras"):
            _keras()
        import onnx

        from converter.keras_builder import BuildOptions, build_keras_model

        with clock.step("build-keras", "building the Keras 3 model"):
            shapes = {s.name: s.shape for s in specs}
            try:
                built = build_keras_model(onnx.load(str(onnx_path)),
                                          BuildOptions(keep_layout=options.keep_layout, input_shapes=shapes,
                                                       model_name=_model_name(source),
                                                       parameter_names=parameter_names,
                                                       unroll_max_steps=_unroll_steps(target, exported)))
            except UnsupportedError as err:
                from converter.routes import onnx2tf_adapter

                if options.route != "auto" or target == "keras" or not onnx2tf_adapter.available():
                    raise
                notes_l.append(f"crossport's Keras builder could not convert the graph ({err}); used onnx2tf")
                use_onnx2tf = True
    if use_onnx2tf and target != "onnx":
        artifact_tmp, target_runner, hop = _via_onnx2tf(target, options, clock, tmp, onnx_path, specs, sets,
                                                        onnx_runner, source_layouts, output_names, tol, route,
                                                        run_cache)
        if hop is not None:
            hops.append(hop if source_runner is None else as_intermediate(hop))
            if source_runner is not None:
                src = _with_rank3_layouts(source_runner, target_runner)
                hops.append(run_hop(src, target_runner, sets, src.input_layouts, output_names, tol, run_cache))
    if built is not None:
        route.append("keras 3 (crossport builder)")
        from converter.parity import runners as R
        from converter.routes import keras_export

        in_layouts = tuple(built.input_layouts[n] for n in built.input_names)
        out_layouts = tuple(built.output_layouts[n] for n in built.output_names)
        with clock.step("save", f"writing {target}"):
            if target == "keras":
                artifact_tmp = tmp / "model.keras"
                keras_export.save_keras(built.model, artifact_tmp)
            elif target == "saved_model":
                artifact_tmp = tmp / "saved_model"
                sm_outputs = keras_export.save_saved_model(built.model, artifact_tmp)
                route.append("tf savedmodel (keras export)")
            else:
                from converter.frameworks import silenced_stderr

                artifact_tmp = tmp / "model.tflite"
                with silenced_stderr():  # the TFLite converter logs from C++ straight to fd 2
                    notes_l.extend(keras_export.save_tflite(built.model, artifact_tmp, fp16=options.fp16))
                route.append("tflite" + (" float16" if options.fp16 else " float32"))
        # The file is written: what the rest needs from the built model is two small facts, and verification
        # loads the file itself -- holding both copies of every weight at once is the conversion's peak.
        keras_trainable = int(sum(int(np.prod(w.shape)) for w in built.model.trainable_weights))
        keras_input_keys = tuple(t.name for t in built.model.inputs)
        built = replace(built, model=None)
        release_memory()  # a functional Keras model is a reference cycle: free its variables now
        if options.verify:
            with clock.step("verify", f"verifying ONNX vs {target}"):
                if target == "keras":
                    import keras

                    reloaded = keras.models.load_model(str(artifact_tmp))
                    target_runner = R.KerasRunner(reloaded, in_layouts, out_layouts, name="keras (.keras file)")
                elif target == "saved_model":
                    target_runner = R.SavedModelRunner(artifact_tmp, in_layouts, out_layouts, output_keys=sm_outputs,
                                                       input_keys=keras_input_keys)
                else:
                    target_runner = R.TFLiteRunner(artifact_tmp, in_layouts, out_layouts,
                                                   name="tflite" + (" fp16" if options.fp16 else ""))
                tol_target = tol
                if options.fp16 and target == "tflite":
                    tol_target = Tolerance(max(options.atol, 1e-2), max(options.rtol, 1e-2))
                    notes_l.append(f"float16 TFLite compared with atol {tol_target.atol:g}, rtol {tol_target.rtol:g}")
                hop = run_hop(onnx_runner, target_runner, sets, source_layouts, output_names, tol_target, run_cache)
                hops.append(hop if source_runner is None else as_intermediate(hop))
                if source_runner is not None:
                    hops.append(run_hop(source_runner, target_runner, sets, source_layouts, output_names, tol_target,
                                        run_cache))
    verified = options.verify
    passed = verified and verdict(hops) and (target == "onnx" or target_runner is not None)
    if passed and not all(h.passed for h in hops):
        notes_l.append("an intermediate hop exceeded the tolerance but the delivered model matches the source "
                       "end to end; the verdict rests on the end-to-end comparison")
    trainable = {}
    if torch_trainable is not None:
        trainable["pytorch"] = torch_trainable
    if built is not None:
        trainable["keras"] = keras_trainable
        merged = built.merged_params
        if merged and trainable.get("pytorch") == trainable["keras"] + merged:
            notes_l.append(f"Keras LSTM layers hold one bias where PyTorch has two (b_ih + b_hh, summed): "
                           f"{merged:,} fewer trainable parameters for the same function")
        elif "pytorch" in trainable and trainable["pytorch"] != trainable["keras"] and target == "keras":
            notes_l.append(f"trainable parameter counts differ: PyTorch {trainable['pytorch']:,}, "
                           f"Keras {trainable['keras']:,}")
    publish = passed or not verified or options.force
    if publish:
        _publish(artifact_tmp, output, options.force)
    in_infos, out_infos = _tensor_infos(specs, exported, built, source_layouts, hops, target_runner)
    report = ConversionReport(
        source=source, source_format=source_format, target=target, output=str(output) if publish else None,
        route=tuple(route), opset=exported.opset, exporter=exported.exporter, inputs=in_infos, outputs=out_infos,
        dynamic_batch=bool(built.dynamic_batch if built else exported.dynamic_batch), verified=verified,
        passed=passed, forced=options.force and verified and not passed, hops=tuple(hops),
        input_sets=tuple(s.describe() for s in sets) if verified else (), atol=options.atol, rtol=options.rtol,
        timings=dict(clock.timings),
        versions=_versions(("crossport", "torch", "onnx", "onnxruntime", "onnxscript", "tensorflow", "keras",
                            "numpy")),
        trainable_params=trainable, notes=tuple(notes_l),
    )
    if options.report_path:
        report.write(Path(options.report_path))
    return ConversionResult(output if publish else None, report)


def _with_rank3_layouts(runner: Any, like: Any) -> Any:
    """A copy of a channels-first reference runner whose rank-3 tensors are declared NCL (onnx2tf makes them NLC)."""
    import copy

    clone = copy.copy(runner)
    clone.input_layouts = tuple(Layout.NCL if c == Layout.NLC else r for r, c in zip(runner.input_layouts,
                                                                                    like.input_layouts))
    clone.output_layouts = tuple(Layout.NCL if c == Layout.NLC else r for r, c in zip(runner.output_layouts,
                                                                                     like.output_layouts))
    return clone


def _via_onnx2tf(target: str, options: ConvertOptions, clock: _Clock, tmp: Path, onnx_path: Path,
                 specs: list[InputSpec], sets: list[Any], onnx_runner: Any, source_layouts: tuple[Layout, ...],
                 output_names: list[str], tol: Tolerance, route: list[str],
                 run_cache: dict[tuple[int, int], Any]) -> tuple[Path, Any, HopResult | None]:
    """The onnx2tf route (SavedModel / TFLite only), verified against onnxruntime."""
    from converter.layout import layout_for
    from converter.parity import runners as R
    from converter.routes.onnx2tf_adapter import SIGNATURE_KEY, convert_with_onnx2tf

    with clock.step("onnx2tf", "converting with onnx2tf"):
        res = convert_with_onnx2tf(onnx_path, tmp / "onnx2tf", saved_model=target == "saved_model",
                                   tflite_fp32=target == "tflite" and not options.fp16,
                                   tflite_fp16=target == "tflite" and options.fp16, keep_layout=options.keep_layout)
    route.append("onnx2tf")
    in_layouts = tuple(layout_for(len(s.shape), not options.keep_layout) if len(s.shape) in (3, 4, 5)
                       else Layout.NONE for s in specs)
    probe = onnx_runner.run(sets[0].arrays)
    out_layouts = tuple(layout_for(o.ndim, cl) if o.ndim in (3, 4, 5) else Layout.NONE
                        for o, cl in zip(probe, res.output_channels_last))
    if target == "saved_model":
        artifact = res.saved_model
        runner = R.SavedModelRunner(artifact, in_layouts, out_layouts, name="tf-savedmodel (onnx2tf)",
                                    output_keys=res.output_names, input_keys=res.input_names)
    else:
        artifact = res.tflite_fp16 if options.fp16 else res.tflite_fp32
        runner = R.TFLiteRunner(artifact, in_layouts, out_layouts, name="tflite (onnx2tf)",
                                input_keys=res.input_names, output_keys=res.output_names)
    del SIGNATURE_KEY
    hop = None
    if options.verify:
        ref = _with_rank3_layouts(onnx_runner, runner)
        first = tuple(Layout.NCL if l == Layout.NLC else s for s, l in zip(source_layouts, in_layouts))
        with clock.step("verify", f"verifying ONNX vs {target} (onnx2tf)"):
            hop = run_hop(ref, runner, sets, first, output_names, tol, run_cache)
    return artifact, runner, hop


def _model_name(source: str) -> str:
    import re

    stem = Path(source.split(":")[-1]).stem if ":" in source else Path(source).stem
    return re.sub(r"[^A-Za-z0-9_]", "_", stem) or "model"


def _tensor_infos(specs, exported, built, source_layouts, hops, target_runner=None):
    ins = []
    for i, s in enumerate(specs):
        if built:
            tgt = built.input_layouts.get(exported.input_names[i], Layout.NONE)
        elif target_runner is not None and i < len(target_runner.input_layouts):
            tgt = target_runner.input_layouts[i]
        else:
            tgt = source_layouts[i]
        dyn = (None, *s.shape[1:]) if exported.dynamic_batch and s.shape else s.shape
        ins.append(TensorInfo(s.name, tuple(dyn), s.dtype, source_layouts[i].value, tgt.value))
    outs = []
    first = next((h for h in hops if h.outputs), None)
    for k, name in enumerate(exported.output_names):
        if built:
            tgt = built.output_layouts.get(name, Layout.NONE).value
        elif target_runner is not None and k < len(target_runner.output_layouts):
            tgt = target_runner.output_layouts[k].value
        else:
            tgt = "as source"
        shape: tuple = ()
        if first is not None and k < len(first.outputs):
            shape = tuple(first.outputs[k].reference_shape)
            if exported.dynamic_batch and shape:
                shape = (None, *shape[1:])
        src_layout = Layout.NCHW.value if len(shape) == 4 else Layout.NONE.value
        outs.append(TensorInfo(name, shape, "float32", src_layout, tgt))
    return tuple(ins), tuple(outs)
