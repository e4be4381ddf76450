"""What a route has done so far -- steps, hops, notes, the run cache -- and how that becomes the report.

Both directions write their report through ``Ledger.report``, so the verdict, ``forced``, the input sets and the
timings are filled in one place; ``tensor_infos`` is the one description of a model's inputs and outputs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from converter.conversion.job import Job
from converter.errors import described
from converter.layout import Layout
from converter.parity.inputs import InputSet, InputSpec
from converter.parity.latency import Latency
from converter.parity.report import HopResult
from converter.reporting import versions
from converter.result import ConversionReport, TensorInfo


@dataclass
class Ledger:
    """Mutable while a route runs; each route attempt works on its own ``copy``."""

    route: list[str] = field(default_factory=list)
    hops: list[HopResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    run_cache: dict[tuple[int, int], Any] = field(default_factory=dict)  # each model runs once per input set
    latency: list[Latency] = field(default_factory=list)  # the source's and each written artifact's
    quantization: dict[str, Any] = field(default_factory=dict)  # a quantized TFLite's mode, calibration, I/O params

    def copy(self) -> "Ledger":
        return Ledger(list(self.route), list(self.hops), list(self.notes), dict(self.run_cache), list(self.latency),
                      dict(self.quantization))

    def time_runner(self, job: Job, runner: Any, sets: Sequence[InputSet], layouts: Sequence[Layout],
                    role: str, warm: bool = False) -> None:
        """Record ``runner``'s latency on a verification input set (``latency.latency_set``), when verifying and
        timing is on. A runtime that cannot be timed is noted, never a failure: the verdict does not depend on
        speed. ``warm``: this runner itself just ran the verification sets (``latency.measure``: no warm-up call)."""
        runs = job.options.latency_runs
        if not job.options.verify or runs <= 0 or not sets or runner is None:
            return
        from converter.parity.latency import latency_set, measure

        timed_set = latency_set(sets)
        try:
            with job.clock.step("latency", f"timing {runner.name}"):
                self.latency.append(measure(runner, timed_set.arrays, layouts, timed_set.label, role, runs,
                                            job.options.latency_budget_s, warm=warm))
        except Exception as err:  # noqa: BLE001 - a runtime's own exception types
            self.notes.append(f"latency of {runner.name} not measured: "
                              f"{described(err)}")

    def report(self, job: Job, *, sets: Sequence[InputSet], passed: bool, written: bool, opset: int | None,
               exporter: str | None, inputs: tuple[TensorInfo, ...], outputs: tuple[TensorInfo, ...],
               dynamic_batch: bool, trainable: dict[str, int], version_of: tuple[str, ...],
               route_name: str = "") -> ConversionReport:
        verified = job.options.verify
        return ConversionReport(
            source=job.source, source_format=job.fmt.value, target=job.target,
            output=str(job.output) if written else None, route=tuple(self.route), opset=opset, exporter=exporter,
            inputs=inputs, outputs=outputs, dynamic_batch=dynamic_batch, verified=verified, passed=passed,
            forced=written and verified and not passed, hops=tuple(self.hops),
            input_sets=tuple(s.describe() for s in sets) if verified else (), atol=job.options.atol,
            rtol=job.options.rtol, scale=job.tol.scale, timings=dict(job.clock.timings), versions=versions(version_of),
            trainable_params=trainable, notes=tuple(self.notes), route_name=route_name,
            latency=tuple(self.latency), quantization=dict(self.quantization),
        )


def tensor_infos(specs: Sequence[InputSpec], in_layouts: Sequence[Layout], in_targets: Sequence[Layout],
                 out_names: Sequence[str], out_layouts: Sequence[Layout] | None, out_targets: Sequence[str],
                 hops: Sequence[HopResult], dynamic: bool) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """Each input/output: shape (None = dynamic batch), dtype, layout source -> target. Output shapes come from the
    first hop that compared outputs; ``out_layouts=None`` means "NCHW when rank 4" (a PyTorch source)."""
    ins = tuple(TensorInfo(s.name, (None, *s.shape[1:]) if dynamic and s.shape else tuple(s.shape), s.dtype,
                           l.value, t.value) for s, l, t in zip(specs, in_layouts, in_targets))
    first = next((h for h in hops if h.outputs), None)
    outs = []
    for k, name in enumerate(out_names):
        shape: tuple = tuple(first.outputs[k].reference_shape) if first and k < len(first.outputs) else ()
        if out_layouts is None:
            src = Layout.NCHW.value if len(shape) == 4 else Layout.NONE.value
        else:
            src = (out_layouts[k] if k < len(out_layouts) else Layout.NONE).value
        if dynamic and shape:
            shape = (None, *shape[1:])
        outs.append(TensorInfo(name, shape, "float32", src, out_targets[k] if k < len(out_targets) else src))
    return ins, tuple(outs)
