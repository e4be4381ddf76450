"""The ``torch-export`` route: a PyTorch source (``.pt2``, a state_dict + class, a factory, a trusted pickle) ->
``torch.export`` -> an AOTInductor package or an ExecuTorch ``.pte``, verified against the source module with the
artifact loaded by its own runtime in a fresh process.

No ONNX in between: the deployment formats are PyTorch's own, so the decisive hop is source -> artifact.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from converter.conversion.job import DEPLOY_TARGETS, ConversionResult, ConvertOptions, Job
from converter.conversion.ledger import Ledger, tensor_infos
from converter.formats import Format
from converter.parity.report import run_hop, verdict

PYTORCH_FORMATS = (Format.EXPORTED_PROGRAM, Format.TORCHSCRIPT, Format.TORCH_CHECKPOINT, Format.FACTORY)
VERSIONS = ("crossport", "torch", "executorch", "numpy")


@dataclass(frozen=True)
class TorchExportRoute:
    name: ClassVar[str] = "torch-export"

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        if fmt not in PYTORCH_FORMATS:
            return f"torch-export reads PyTorch sources; the source is {fmt.value}"
        if target not in DEPLOY_TARGETS:
            return f"torch-export writes {' and '.join(DEPLOY_TARGETS)}, not {target}"
        if options.emit_source:
            return "--emit-source writes model.py from the onnx route's module graph"
        return ""

    def run(self, _: Any, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        import numpy as np
        import torch

        from converter.conversion.torch_source import FORCE_HINT, parameters, run_once, sample_inputs, torch_layouts
        from converter.formats import load_torch_source
        from converter.layout import Layout
        from converter.model_checks import raise_if_nonfinite, torch_nonfinite
        from converter.parity.runners import TorchRunner
        from converter.parity.isolated import deploy_runner
        from converter.conversion import deploy

        options, clock, target, notes = job.options, job.clock, job.target, ledger.notes
        with clock.step("load", f"loading {job.source}"):
            torch.manual_seed(options.seed)
            src = load_torch_source(job.source, job.fmt, options.model_class, options.model_kwargs,
                                    options.trust_pickle)
        notes.extend(src.notes)
        if not options.force:
            raise_if_nonfinite(job.source, torch_nonfinite(src.module), FORCE_HINT)
        specs, sets, dynamic = sample_inputs(src, job.fmt, options)
        layouts = torch_layouts(specs)
        reference = TorchRunner(src.module, layouts, ())
        with clock.step("check-inputs", "running the source model once"):
            probe = run_once(reference, sets[0])
        reference.output_layouts = tuple(Layout.NCHW if o.ndim == 4 else Layout.NONE for o in probe)
        out_names = [f"output{k}" for k in range(len(probe))]
        artifact = job.tmp / f"model{'.pte' if target == 'executorch' else '.pt2'}"
        example = [torch.from_numpy(np.ascontiguousarray(a)) for a in sets[0].arrays]
        with clock.step("save", f"writing {target} (torch.export, {deploy.ROUTE_STEP[target]})"):
            program = src.exported_program if src.exported_program is not None else src.module
            saved = deploy.save(program, example, artifact, dynamic, target)
        notes.extend(saved.notes)
        ledger.route[:] = [job.fmt.value, "torch.export", deploy.ROUTE_STEP[target]]
        if options.verify:
            first = [a.shape for a in sets[0].arrays]  # a fixed-batch artifact runs the sets of that batch only
            run_sets = sets if saved.dynamic_batch else [s for s in sets if [a.shape for a in s.arrays] == first]
            with clock.step("verify", f"loading the {target} artifact in its runtime (fresh process) and verifying it"):
                runner = deploy_runner(artifact, target, layouts, reference.output_layouts)
                try:
                    ledger.hops.append(run_hop(reference, runner, run_sets, layouts, out_names, job.tol,
                                               ledger.run_cache))
                finally:
                    runner.close()
        verified = options.verify
        passed = verified and verdict(ledger.hops)
        written = passed or not verified or options.force and last
        if written:
            job.publish(artifact)
        _, trainable = parameters(src.module)
        ins, outs = tensor_infos(specs, layouts, layouts, out_names, reference.output_layouts,
                                 [l.value for l in reference.output_layouts], ledger.hops, saved.dynamic_batch)
        report = ledger.report(job, sets=sets, passed=passed, written=written, opset=None, exporter="torch.export",
                               inputs=ins, outputs=outs, dynamic_batch=saved.dynamic_batch,
                               trainable={"pytorch": trainable} if trainable is not None else {},
                               version_of=VERSIONS, route_name=self.name)
        return ConversionResult(job.output if written else None, report)
