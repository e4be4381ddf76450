"""The ``builder`` route: ONNX -> crossport's Keras 3 builder -> ``.keras`` / SavedModel / ``.tflite``, each file
reloaded and verified against onnxruntime and the source."""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from converter.conversion.job import ConversionResult, ConvertOptions, Job, model_name
from converter.conversion.ledger import Ledger
from converter.conversion.routes._tf import check_chain, finish
from converter.conversion.sources import OnnxSource
from converter.errors import UnsupportedError
from converter.formats import Format
from converter.layout import Layout
from converter.memory import release_memory
from converter.parity.report import as_intermediate, run_hop
from converter.parity.runners import Runner


class BuildRefused(UnsupportedError):
    """The builder cannot convert the graph; under ``--route auto`` onnx2tf gets its turn."""


def way_out(target: str, onnx_source: bool = False) -> str:
    """What the user can do when the builder cannot translate an op: only ways that exist here and now."""
    from converter.adapters import onnx2tf_adapter

    onnx = ("the .onnx source itself runs in onnxruntime" if onnx_source
            else "--to onnx writes the exported model (verified with onnxruntime)")
    if target == "keras":
        other = ("; --route onnx2tf writes SavedModel or .tflite (not .keras)" if onnx2tf_adapter.available()
                 else "")
        return f"no other route writes .keras; {onnx}{other}"
    if onnx2tf_adapter.available():
        return f"--route onnx2tf (installed) may convert it; {onnx}"
    return (f"{onnx}; the onnx2tf route (pip install 'crossport[onnx2tf]', in an environment of its own) may "
            f"convert it to {'SavedModel' if target == 'saved_model' else '.tflite'}")


@dataclass(frozen=True)
class BuilderRoute:
    name: ClassVar[str] = "builder"

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        return "" if target in ("keras", "saved_model", "tflite") else f"the builder does not write {target}"

    def run(self, src: OnnxSource, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        import onnx

        from converter.adapters import keras_export
        from converter.frameworks import keras as _keras
        from converter.keras_builder import BuildOptions, build_keras_model

        options, target, clock, notes = job.options, job.target, job.clock, ledger.notes
        mode = options.quant_mode if target == "tflite" else None
        with clock.step("import-tensorflow", "loading TensorFlow/Keras"):
            _keras()
        with clock.step("build-keras", "building the Keras 3 model"):
            shapes = {s.name: s.shape for s in src.specs}
            # TFLite's fused sequence kernel beats an unrolled loop, but with a dynamic batch the TFLite converter
            # cannot lower Keras' TensorList loop and would need Select TF (Flex) ops, which neither LiteRT nor TF
            # 2.21's Python interpreter runs: a dynamic-batch .tflite is unrolled (fixed time steps) instead.
            fused = target == "tflite" and not src.exported.dynamic_batch
            unroll = 0 if fused else BuildOptions.unroll_max_steps
            try:
                # The weights stay in the external data file and are mapped, not copied into the protobuf.
                built = build_keras_model(onnx.load(str(src.onnx_path), load_external_data=False),
                                          BuildOptions(keep_layout=options.keep_layout, input_shapes=shapes,
                                                       model_name=model_name(job.source),
                                                       parameter_names=src.parameter_names, unroll_max_steps=unroll,
                                                       external_data_dir=str(src.onnx_path.parent)))
            except UnsupportedError as err:
                raise BuildRefused(f"{err.args[0] if err.args else err}; "
                                   f"{way_out(target, src.runner is None)}") from err
        ledger.route.append("keras 3 (crossport builder)")
        in_layouts = tuple(built.input_layouts[n] for n in built.input_names)
        out_layouts = tuple(built.output_layouts[n] for n in built.output_names)
        with clock.step("save", f"writing {target}"):
            if target == "keras":
                artifact = job.tmp / "model.keras"
                keras_export.save_keras(built.model, artifact)
            elif target == "saved_model":
                artifact = job.tmp / "saved_model"
                sm_outputs = keras_export.save_saved_model(built.model, artifact)
                ledger.route.append("tf savedmodel (keras export)")
            else:
                from converter.frameworks import silenced_stderr

                artifact = job.tmp / "model.tflite"
                representative = _representative(src, job, built, ledger) if mode in ("int8", "int8-full") else None
                with silenced_stderr():  # the TFLite converter logs from C++ straight to fd 2
                    _save_tflite(built.model, artifact, mode, representative, options.allow_flex, ledger)
        thresholds = None
        if mode and target == "tflite":
            from converter.parity.quality import thresholds_for

            thresholds = thresholds_for(mode, options.min_cosine, options.min_snr_db, options.min_top1)
            ledger.quantization.update({"mode": mode, "thresholds": thresholds.to_dict(),
                                        "thresholds_text": thresholds.describe(), "io": _io_params(artifact)})
            if options.verify:
                _float_hop(src, job, ledger, built.model, in_layouts, out_layouts, thresholds)
        # The file is written: what the rest needs from the built model is two small facts, and verification
        # loads the file itself -- holding both copies of every weight at once is the conversion's peak.
        keras_trainable = int(sum(int(np.prod(w.shape)) for w in built.model.trainable_weights))
        missing = _missing_parameters(src.parameter_names, built.model)
        keras_input_keys = tuple(t.name for t in built.model.inputs)
        built = replace(built, model=None)
        release_memory()  # a functional Keras model is a reference cycle: free its variables now
        target_runner: Runner | None = None
        if options.verify:
            from converter.parity import runners as R

            with clock.step("verify", f"verifying {'the source' if src.runner is not None else 'ONNX'} vs {target}"):
                if target == "keras":
                    import keras

                    reloaded = keras.models.load_model(str(artifact))
                    target_runner = R.KerasRunner(reloaded, in_layouts, out_layouts, name="keras (.keras file)")
                elif target == "saved_model":
                    target_runner = R.SavedModelRunner(artifact, in_layouts, out_layouts, output_keys=sm_outputs,
                                                       input_keys=keras_input_keys)
                else:
                    target_runner = R.TFLiteRunner(artifact, in_layouts, out_layouts,
                                                   name=f"tflite {mode}" if mode else "tflite")
                tol = job.tol
                scales = tuple(io["scale"] for io in ledger.quantization.get("io", ()) if io["kind"] == "output")
                judge = {"quality": thresholds, "output_scales": scales}
                check_chain(src, target_runner, job, ledger, judge)
                if thresholds is not None:
                    _summarize_cost(ledger)
        return finish(src, job, ledger, artifact, target_runner, built, keras_trainable, missing)


def _save_tflite(model: Any, artifact: Path, mode: str | None, representative: Any, allow_flex: bool,
                 ledger: Ledger) -> None:
    """A float32 or fp16 file from crossport's direct writer (seconds, the weights copied once); integer-quantized
    files (calibration) and a model with an op the writer does not map from the TF converter."""
    from converter.adapters import keras_export
    from converter.tflite_writer import WriterRefused, write_model

    if mode in (None, "fp16"):
        try:
            write_model(model, artifact, [t.name for t in model.inputs], keras_export.signature_output_names(model),
                        fp16=mode == "fp16")
            ledger.route.append(f"tflite {mode or 'float32'} (crossport direct writer)")
            return
        except WriterRefused as err:
            artifact.unlink(missing_ok=True)
            ledger.notes.append(f"direct TFLite writer: {err}; written by the TF converter instead")
    ledger.notes.extend(keras_export.save_tflite(model, artifact, quantize=mode, representative=representative,
                                                 allow_flex=allow_flex))
    ledger.route.append(f"tflite {mode or 'float32'} (TF converter)")


def _representative(src: OnnxSource, job: Job, built: Any, ledger: Ledger) -> list[list[np.ndarray]]:
    """Calibration feeds for the int8 modes, moved into the built model's input layouts."""
    from converter import calibration

    specs = src.specs
    if job.options.calibration:
        cal = calibration.load(job.options.calibration, [s.name for s in specs], [s.shape for s in specs],
                               [s.dtype for s in specs])
    else:
        cal = calibration.seeded(specs, job.options.seed)
        ledger.notes.append(f"warning: {calibration.SEEDED_WARNING}")
        if job.clock.progress:
            job.clock.progress(f"warning: {calibration.SEEDED_WARNING}")
    ledger.quantization["calibration"] = cal.describe()
    names = src.exported.input_names
    model_layouts = [built.input_layouts.get(n, Layout.NONE) for n in names]
    return calibration.representative_feeds(cal, src.layouts, model_layouts)


def _io_params(artifact: Path) -> list[dict[str, Any]]:
    """Each input/output of the written file with its dtype, and scale/zero point where it is an integer tensor."""
    from converter.frameworks import silenced_stderr, tflite_interpreter
    from converter.parity.runners import io_quantization

    with silenced_stderr():
        interp = tflite_interpreter(str(artifact))
    rows = []
    for kind, details in (("input", interp.get_input_details()), ("output", interp.get_output_details())):
        for d in details:
            q = io_quantization(d)
            rows.append({"kind": kind, "name": str(d["name"]), "dtype": np.dtype(d["dtype"]).name,
                         "scale": q[0] if q else None, "zero_point": q[1] if q else None})
    return rows


def _float_hop(src: OnnxSource, job: Job, ledger: Ledger, model: Any, in_layouts: tuple[Layout, ...],
               out_layouts: tuple[Layout, ...], thresholds: Any) -> None:
    """The float Keras model the quantized file was converted from, measured the same way (metrics and latency),
    so the report shows what quantization cost."""
    from converter.parity.runners import KerasRunner

    runner = KerasRunner(model, in_layouts, out_layouts, name="keras float32 (before quantization)")
    reference = src.runner if src.runner is not None else src.onnx_runner
    import warnings

    with job.clock.step("verify", "verifying the float model before quantization"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras: "the structure of `inputs` doesn't match" for a one-input model
        hop = run_hop(reference, runner, list(src.sets), src.layouts, src.output_names, job.tol, None,
                      quality=thresholds)
    ledger.hops.append(as_intermediate(hop))
    ledger.time_runner(job, runner, src.sets, src.layouts, "float, before quantization")


def _summarize_cost(ledger: Ledger) -> None:
    """What quantization cost, per output: the float model's and the quantized file's metrics side by side, and
    the metric that decided the verdict."""
    final = ledger.hops[-1]
    floating = next((h for h in ledger.hops if h.candidate.startswith("keras float32")), None)
    before = {q.name: q for q in floating.quality} if floating else {}
    ledger.quantization["outputs"] = [
        {"name": q.name, "decided_by": q.decided_by, "quantized": q.to_dict(),
         "float": before[q.name].to_dict() if q.name in before else None} for q in final.quality]


def _missing_parameters(names: frozenset[str], model: object) -> tuple[str, ...]:
    """Source parameters with no Keras layer named after them or their module (layer names are module paths with
    ``_`` for ``.``, ``keras_builder.context.layer_name_for``)."""
    from converter.keras_builder.context import layer_name_for

    layers = {getattr(layer, "name", "") for layer in getattr(model, "layers", ())
              if getattr(layer, "trainable_weights", None)}
    return tuple(sorted(n for n in names if layer_name_for(n) not in layers
                        and layer_name_for(n.rpartition(".")[0]) not in layers))
