"""The end every TensorFlow/Keras/ONNX-target route shares: verdict, trainable counts, publish, report."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from converter import contract
from converter.conversion.job import ConversionResult, Job
from converter.conversion.ledger import Ledger, tensor_infos
from converter.conversion.sources import OnnxSource
from converter.layout import Layout
from converter.parity.report import as_intermediate, run_hop, verdict
from converter.parity.runners import Runner

VERSIONS = ("crossport", "torch", "onnx", "onnxruntime", "onnxscript", "tensorflow", "keras", "numpy")


def finish(src: OnnxSource, job: Job, ledger: Ledger, artifact: Path, target_runner: Runner | None,
           built: Any = None, keras_trainable: int = 0, missing: tuple[str, ...] = ()) -> ConversionResult:
    """``built``: the builder's ``BuildResult`` (its model already dropped) when the builder made the artifact."""
    options, target, notes = job.options, job.target, ledger.notes
    verified = options.verify
    # The artifact's runner has just run every verification set (``check_chain``); the ONNX runner may not have.
    ledger.time_runner(job, target_runner if target_runner is not None else src.onnx_runner, src.sets, src.layouts,
                       "artifact", warm=target_runner is not None)
    passed = verified and verdict(ledger.hops) and (target == "onnx" or target_runner is not None)
    if passed and not all(h.passed for h in ledger.hops):
        notes.append("an intermediate hop exceeded the tolerance but the delivered model matches the source "
                     "end to end; the verdict rests on the end-to-end comparison")
    trainable = {}
    if src.trainable is not None:
        trainable["pytorch"] = src.trainable
    if built is not None:
        trainable["keras"] = keras_trainable
        merged = built.merged_params
        if merged and trainable.get("pytorch") == trainable["keras"] + merged:
            notes.append(f"Keras LSTM layers hold one bias where PyTorch has two (b_ih + b_hh, summed): "
                         f"{merged:,} fewer trainable parameters for the same function")
        elif "pytorch" in trainable and trainable["pytorch"] != trainable["keras"] and target != "tflite":
            _check_parameters(trainable["pytorch"], trainable["keras"], missing, options.allow_param_loss, notes)
    written = passed or not verified or options.force
    exported = src.exported
    in_targets, out_targets = [], []
    for i in range(len(src.specs)):
        if built:
            in_targets.append(built.input_layouts.get(exported.input_names[i], Layout.NONE))
        elif target_runner is not None and i < len(target_runner.input_layouts):
            in_targets.append(target_runner.input_layouts[i])
        else:
            in_targets.append(src.layouts[i])
    for k, name in enumerate(exported.output_names):
        if built:
            out_targets.append(built.output_layouts.get(name, Layout.NONE).value)
        elif target_runner is not None and k < len(target_runner.output_layouts):
            out_targets.append(target_runner.output_layouts[k].value)
        else:
            out_targets.append("as source")
    ins, outs = tensor_infos(src.specs, src.layouts, in_targets, exported.output_names, None, out_targets,
                             ledger.hops, exported.dynamic_batch)
    layers = built.layer_paths if built is not None and target == "keras" else {}
    if written:
        note = job.publish(artifact, contract.from_infos(ins, outs, ledger.route, exported.opset, job.source, layers))
        notes.extend([note] if note else [])
    report = ledger.report(job, sets=src.sets, passed=passed, written=written, opset=exported.opset,
                           exporter=exported.exporter, inputs=ins, outputs=outs,
                           dynamic_batch=bool(built.dynamic_batch if built else exported.dynamic_batch),
                           trainable=trainable, version_of=VERSIONS)
    if target == "saved_model":
        from converter.serving import read_serving_info

        report = replace(report, serving=read_serving_info(job.output if written else artifact,
                                                           options.model_version))
    report = replace(report, layer_paths=dict(layers))
    return ConversionResult(job.output if written else None, report)


def check_chain(src: OnnxSource, target_runner: Runner, job: Job, ledger: Ledger, judge: dict[str, Any]) -> None:
    """Verify a TensorFlow-side artifact. An ONNX source is the reference itself (onnxruntime). A PyTorch source is
    compared end to end with its recorded outputs; only when that fails do PyTorch vs ONNX and ONNX vs the artifact
    run too, so the report says which step broke -- when it passes they would cost an onnxruntime session (seconds
    on a large model) and decide nothing. ``judge``: ``run_hop``'s quality thresholds for a quantized file."""
    sets, names, tol, cache = list(src.sets), src.output_names, job.tol, ledger.run_cache
    if src.runner is None:
        ledger.hops.append(run_hop(src.onnx_runner, target_runner, sets, src.layouts, names, tol, cache, **judge))
        return
    end_to_end = run_hop(src.runner, target_runner, sets, src.layouts, names, tol, cache, **judge)
    if not end_to_end.passed:
        onnx_name = src.onnx_runner.name
        if not any(h.candidate == onnx_name for h in ledger.hops):
            ledger.hops.append(as_intermediate(run_hop(src.runner, src.onnx_runner, sets, src.layouts, names, tol,
                                                       cache)))
        ledger.hops.append(as_intermediate(run_hop(src.onnx_runner, target_runner, sets, src.layouts, names, tol,
                                                   cache, **judge)))
        src.onnx_runner.release()
    ledger.hops.append(end_to_end)


def _check_parameters(torch_count: int, keras_count: int, missing: tuple[str, ...], allowed: bool,
                      notes: list[str]) -> None:
    """A converted model that trains a different number of parameters is not the same model to fine-tune:
    refused (nothing written) unless ``--allow-param-loss``; the message says how many and where."""
    from converter.errors import ParameterLossError

    diff = torch_count - keras_count
    where = f" ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''} became constants)" if missing else ""
    text = (f"trainable parameter counts differ: PyTorch {torch_count:,}, Keras {keras_count:,} "
            f"({'-' if diff > 0 else '+'}{abs(diff):,}){where}")
    if allowed:
        notes.append(text + "; accepted with --allow-param-loss")
        return
    hint = ("; a .pt2 exported with a fixed batch folds batch-shaped parameters: export it with "
            "dynamic_shapes={0: torch.export.Dim('batch')}" if any("fixed batch" in n for n in notes) else "")
    raise ParameterLossError(f"{text}{hint}; pass --allow-param-loss to write it anyway")
