"""The ``onnx2tf`` route (SavedModel / TFLite only): ONNX -> onnx2tf, verified against onnxruntime and the source.

onnx2tf makes rank-3 tensors NLC where the reference is NCL; ``_with_rank3_layouts`` tells the comparison so.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

from converter.adapters.onnx2tf_adapter import convert_with_onnx2tf
from converter.conversion.job import ConversionResult, ConvertOptions, Job
from converter.conversion.ledger import Ledger
from converter.conversion.routes._tf import finish
from converter.errors import UnsupportedError
from converter.conversion.sources import OnnxSource
from converter.formats import Format
from converter.layout import Layout, layout_for
from converter.parity.report import as_intermediate, run_hop
from converter.parity.runners import Runner


@dataclass(frozen=True)
class Onnx2tfRoute:
    name: ClassVar[str] = "onnx2tf"

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        return "" if target in ("saved_model", "tflite") else "onnx2tf writes SavedModel and TFLite only"

    def run(self, src: OnnxSource, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        from converter.parity import runners as R

        options, target, clock = job.options, job.target, job.clock
        if options.quant_mode not in (None, "fp16"):
            raise UnsupportedError(f"--quantize {options.quant_mode} is done by crossport's builder route; the "
                                   "onnx2tf route writes float32/float16 TFLite only")
        fp16 = options.quant_mode == "fp16"
        with clock.step("onnx2tf", "converting with onnx2tf"):
            res = convert_with_onnx2tf(src.onnx_path, job.tmp / "onnx2tf", saved_model=target == "saved_model",
                                       tflite_fp32=target == "tflite" and not fp16,
                                       tflite_fp16=target == "tflite" and fp16,
                                       keep_layout=options.keep_layout)
        ledger.route.append("onnx2tf")
        in_layouts = tuple(layout_for(len(s.shape), not options.keep_layout) if len(s.shape) in (3, 4, 5)
                           else Layout.NONE for s in src.specs)
        probe = src.onnx_runner.run(src.sets[0].arrays)
        out_layouts = tuple(layout_for(o.ndim, cl) if o.ndim in (3, 4, 5) else Layout.NONE
                            for o, cl in zip(probe, res.output_channels_last))
        runner: Runner
        if target == "saved_model":
            artifact = res.saved_model
            runner = R.SavedModelRunner(artifact, in_layouts, out_layouts, name="tf-savedmodel (onnx2tf)",
                                        output_keys=res.output_names, input_keys=res.input_names)
        else:
            artifact = res.tflite_fp16 if fp16 else res.tflite_fp32
            runner = R.TFLiteRunner(artifact, in_layouts, out_layouts, name="tflite (onnx2tf)",
                                    input_keys=res.input_names, output_keys=res.output_names)
        if options.verify:
            sets, names = list(src.sets), src.output_names
            ref = _with_rank3_layouts(src.onnx_runner, runner)
            first = tuple(Layout.NCL if l == Layout.NLC else s for s, l in zip(src.layouts, in_layouts))
            with clock.step("verify", f"verifying ONNX vs {target} (onnx2tf)"):
                hop = run_hop(ref, runner, sets, first, names, job.tol, ledger.run_cache)
            ledger.hops.append(hop if src.runner is None else as_intermediate(hop))
            if src.runner is not None:
                ref = _with_rank3_layouts(src.runner, runner)
                ledger.hops.append(run_hop(ref, runner, sets, ref.input_layouts, names, job.tol, ledger.run_cache))
        return finish(src, job, ledger, artifact, runner)


def _with_rank3_layouts(runner: Runner, like: Runner) -> Runner:
    """A copy of a channels-first reference runner whose rank-3 tensors are declared NCL (onnx2tf makes them NLC)."""
    clone = copy.copy(runner)
    clone.input_layouts = tuple(Layout.NCL if c == Layout.NLC else r for r, c in zip(runner.input_layouts,
                                                                                    like.input_layouts))
    clone.output_layouts = tuple(Layout.NCL if c == Layout.NLC else r for r, c in zip(runner.output_layouts,
                                                                                     like.output_layouts))
    return clone
