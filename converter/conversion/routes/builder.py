"""The ``builder`` route: ONNX -> crossport's Keras 3 builder -> ``.keras`` / SavedModel / ``.tflite``, each file
reloaded and verified against onnxruntime and the source."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from converter.conversion.job import ConversionResult, ConvertOptions, Job, model_name
from converter.conversion.ledger import Ledger
from converter.conversion.routes._tf import finish
from converter.conversion.sources import OnnxSource
from converter.errors import UnsupportedError
from converter.formats import Format
from converter.memory import release_memory
from converter.parity.compare import Tolerance
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
                built = build_keras_model(onnx.load(str(src.onnx_path)),
                                          BuildOptions(keep_layout=options.keep_layout, input_shapes=shapes,
                                                       model_name=model_name(job.source),
                                                       parameter_names=src.parameter_names, unroll_max_steps=unroll))
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
                with silenced_stderr():  # the TFLite converter logs from C++ straight to fd 2
                    notes.extend(keras_export.save_tflite(built.model, artifact, fp16=options.fp16))
                ledger.route.append("tflite" + (" float16" if options.fp16 else " float32"))
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

            with clock.step("verify", f"verifying ONNX vs {target}"):
                if target == "keras":
                    import keras

                    reloaded = keras.models.load_model(str(artifact))
                    target_runner = R.KerasRunner(reloaded, in_layouts, out_layouts, name="keras (.keras file)")
                elif target == "saved_model":
                    target_runner = R.SavedModelRunner(artifact, in_layouts, out_layouts, output_keys=sm_outputs,
                                                       input_keys=keras_input_keys)
                else:
                    target_runner = R.TFLiteRunner(artifact, in_layouts, out_layouts,
                                                   name="tflite" + (" fp16" if options.fp16 else ""))
                tol = job.tol
                if options.fp16 and target == "tflite":
                    tol = Tolerance(max(options.atol, 1e-2), max(options.rtol, 1e-2))
                    notes.append(f"float16 TFLite compared with atol {tol.atol:g}, rtol {tol.rtol:g}")
                sets, names = list(src.sets), src.output_names
                hop = run_hop(src.onnx_runner, target_runner, sets, src.layouts, names, tol, ledger.run_cache)
                ledger.hops.append(hop if src.runner is None else as_intermediate(hop))
                if src.runner is not None:
                    ledger.hops.append(run_hop(src.runner, target_runner, sets, src.layouts, names, tol,
                                               ledger.run_cache))
        return finish(src, job, ledger, artifact, target_runner, built, keras_trainable, missing)


def _missing_parameters(names: frozenset[str], model: object) -> tuple[str, ...]:
    """Source parameters with no Keras layer named after them or their module (layers carry module paths)."""
    layers = {getattr(layer, "name", "") for layer in getattr(model, "layers", ())
              if getattr(layer, "trainable_weights", None)}
    return tuple(sorted(n for n in names if n not in layers and n.rpartition(".")[0] not in layers))
