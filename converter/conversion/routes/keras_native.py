"""The ``keras-native`` route: export under Keras' torch backend (worker process), prove the ``.pt2`` loads with
Keras and crossport blocked, verify it against the TensorFlow Keras model, publish.

Hops: ``keras -> pytorch (pt2 file)`` only -- there is no intermediate format to localise a failure in. The route
is rejected (``RouteRejected``) when the program is not plain-torch loadable, when weights were stored as constants
instead of parameters, or when the trainable count differs from Keras'.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

import numpy as np

from converter import contract
from converter.conversion.job import ConversionResult, ConvertOptions, Job
from converter.conversion.keras_sources import KerasSource
from converter.conversion.ledger import Ledger, tensor_infos
from converter.formats import Format
from converter.layout import Layout, to_layout
from converter.parity.inputs import InputSet, make_input_sets
from converter.parity.report import run_hop

VERSIONS = ("crossport", "torch", "keras", "tensorflow", "numpy")


@dataclass(frozen=True)
class KerasNativeRoute:
    name: ClassVar[str] = "keras-native"

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        if fmt not in (Format.KERAS, Format.H5):
            return f"keras-native reloads Keras files under the torch backend; the source is {fmt.value}"
        if target != "pt2":
            return "keras-native writes .pt2 (torch.export) only; TorchScript, aoti and executorch come from the onnx route"
        if options.emit_source:
            return "--emit-source writes model.py from the onnx route's module graph"
        return ""

    def run(self, ks: KerasSource, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        from converter.adapters import keras_torch_backend as ktb

        options, clock, tmp, notes = job.options, job.clock, job.tmp, ledger.notes
        sets = make_input_sets(list(ks.specs), seed=options.seed, dynamic_batch=ks.dynamic_batch)
        static_sets = make_input_sets(list(ks.specs), seed=options.seed, dynamic_batch=False)
        in_nhwc = tuple(l == Layout.NHWC for l in ks.layouts)
        out_nhwc = tuple(l == Layout.NHWC for l in ks.runner.output_layouts)
        t_in = tuple(Layout.NCHW if options.nchw and f else l for l, f in zip(ks.layouts, in_nhwc))
        t_out = tuple(Layout.NCHW if options.nchw and f else l for l, f in zip(ks.runner.output_layouts, out_nhwc))
        example = [np.ascontiguousarray(to_layout(a, l, tl)) for a, l, tl in zip(sets[0].arrays, ks.layouts, t_in)]
        artifact_tmp = tmp / "model.pt2"
        with clock.step("keras-native", "exporting under Keras' torch backend (worker process, torch.export)"):
            native = ktb.export_pt2(job.source, artifact_tmp, example, trust_code=options.trust_code,
                                    dynamic_batch=ks.dynamic_batch, inputs_nhwc=in_nhwc, outputs_nhwc=out_nhwc,
                                    nchw=options.nchw, workdir=tmp / "worker")
        notes.extend(native.notes)
        if native.lifted_constants:
            raise ktb.RouteRejected(f"{native.lifted_constants} weight tensor(s) were exported as constants, not "
                                    "parameters; the .pt2 would not train like the Keras model")
        if native.trainable != ks.trainable:
            raise ktb.RouteRejected(f"trainable parameters differ: Keras {ks.trainable:,}, "
                                    f".pt2 {native.trainable:,}")
        run_sets = sets if native.dynamic_batch else static_sets
        feeds = [[np.ascontiguousarray(to_layout(a, l, tl)) for a, l, tl in zip(s.arrays, ks.layouts, t_in)]
                 for s in run_sets]
        with clock.step("check-plain-torch",
                        "loading and running the .pt2 in a fresh process (keras/crossport blocked)"):
            outputs = ktb.run_keras_free(artifact_tmp, feeds, tmp / "worker")
        notes.append("the .pt2 was loaded and run in a fresh process where keras, tensorflow, crossport and "
                     "onnx2torch cannot be imported; those outputs are the ones verified")
        if options.nchw:
            notes.append("--nchw: rank-4 inputs/outputs are NCHW; the NHWC<->NCHW permutes are part of the model")
        ledger.route[:] = [job.fmt.value, "keras 3 (torch backend, worker process)", "torch.export (.pt2)"]
        if options.verify:
            with clock.step("verify", "verifying the plain-torch outputs against Keras"):
                runner = _Recorded(dict(zip((_digest(f) for f in feeds), outputs)), t_in, t_out,
                                   "pytorch (pt2 file)")
                ledger.hops.append(run_hop(ks.runner, runner, run_sets, ks.layouts, list(ks.output_names),
                                           job.tol))
            ledger.time_runner(job, ks.runner, run_sets, ks.layouts, "source")
            _time_pt2(job, ledger, artifact_tmp, run_sets, ks.layouts, t_in, t_out)
        verified = options.verify
        passed = verified and all(h.passed for h in ledger.hops)
        written = passed or not verified or options.force and last
        if any(in_nhwc) and not options.nchw:
            notes.append("layout: the PyTorch model keeps the source's NHWC for image tensors; pass --nchw for "
                         "channels-first")
        ins, outs = tensor_infos(ks.specs, ks.layouts, t_in, ks.output_names, ks.runner.output_layouts,
                                 [l.value for l in t_out], ledger.hops, native.dynamic_batch)
        if written:
            note = job.publish(artifact_tmp, contract.from_infos(ins, outs, ledger.route, None, job.source))
            notes.extend([note] if note else [])
        report = ledger.report(job, sets=sets, passed=passed, written=written, opset=None,
                               exporter="torch.export of the Keras model (KERAS_BACKEND=torch)", inputs=ins,
                               outputs=outs, dynamic_batch=native.dynamic_batch,
                               trainable={"pytorch": native.trainable, "keras": ks.trainable},
                               version_of=VERSIONS, route_name=self.name)
        return ConversionResult(job.output if written else None, report)


def _digest(feeds: Sequence[np.ndarray]) -> str:
    h = hashlib.sha1()
    for a in feeds:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@dataclass
class _Recorded:
    """A runner over outputs computed in the plain-torch process, looked up by the exact feeds."""

    outputs: dict[str, list[np.ndarray]]
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        key = _digest(feeds)
        if key not in self.outputs:
            raise RuntimeError("no plain-torch run recorded for these inputs")
        return self.outputs[key]


def _time_pt2(job: Job, ledger: Ledger, path: Path, sets: Sequence[InputSet], layouts: Sequence[Layout],
              t_in: tuple[Layout, ...], t_out: tuple[Layout, ...]) -> None:
    """The verified outputs came from a Keras-free process; latency is taken here with plain torch on the same
    file (``torch.export.load``), which runs the same graph."""
    if not job.options.verify or job.options.latency_runs <= 0:
        return
    try:
        from converter.parity.runners import TorchRunner
        from converter.to_torch import artifacts

        runner = TorchRunner(artifacts.load_artifact(path, "pt2"), t_in, t_out, name="pytorch (pt2 file)")
    except Exception as err:  # noqa: BLE001 - timing is informative, never a failure
        ledger.notes.append(f"latency of the .pt2 not measured: {type(err).__name__}")
        return
    ledger.time_runner(job, runner, sets, layouts, "artifact")
