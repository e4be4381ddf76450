"""The ``keras-native`` route as a pipeline step: export under Keras' torch backend (worker process), prove the
``.pt2`` loads with Keras and crossport blocked, verify it against the TensorFlow Keras model, publish.

Hops: ``keras -> pytorch (pt2 file)`` only -- there is no intermediate format to localise a failure in. The route
is rejected (``RouteRejected``) when the program is not plain-torch loadable, when weights were stored as constants
instead of parameters, or when the trainable count differs from Keras'.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from converter.formats import Format
from converter.layout import Layout, to_layout
from converter.parity.compare import Tolerance
from converter.parity.inputs import make_input_sets
from converter.parity.report import run_hop


def convert_native(ks: Any, source: str, fmt: Format, target: str, output: Path, options: Any, clock: Any,
                   tol: Tolerance, tmp: Path, may_force: bool) -> Any:
    """Run the route for the loaded Keras source ``ks`` (``converter.to_torch.pipeline.KerasSource``)."""
    from converter.pipeline import ConversionResult, _publish, _versions
    from converter.result import ConversionReport
    from converter.routes import keras_torch_backend as ktb
    from converter.to_torch.pipeline import _tensor_infos

    notes: list[str] = []
    sets = make_input_sets(list(ks.specs), seed=options.seed, dynamic_batch=ks.dynamic_batch)
    static_sets = make_input_sets(list(ks.specs), seed=options.seed, dynamic_batch=False)
    in_nhwc = tuple(l == Layout.NHWC for l in ks.layouts)
    out_nhwc = tuple(l == Layout.NHWC for l in ks.runner.output_layouts)
    t_in = tuple(Layout.NCHW if options.nchw and f else l for l, f in zip(ks.layouts, in_nhwc))
    t_out = tuple(Layout.NCHW if options.nchw and f else l for l, f in zip(ks.runner.output_layouts, out_nhwc))
    example = [np.ascontiguousarray(to_layout(a, l, tl)) for a, l, tl in zip(sets[0].arrays, ks.layouts, t_in)]
    artifact_tmp = tmp / "model.pt2"
    with clock.step("keras-native", "exporting under Keras' torch backend (worker process, torch.export)"):
        native = ktb.export_pt2(source, artifact_tmp, example, trust_code=options.trust_code,
                                dynamic_batch=ks.dynamic_batch, inputs_nhwc=in_nhwc, outputs_nhwc=out_nhwc,
                                nchw=options.nchw, workdir=tmp / "worker")
    notes.extend(native.notes)
    if native.lifted_constants:
        raise ktb.RouteRejected(f"{native.lifted_constants} weight tensor(s) were exported as constants, not "
                                "parameters; the .pt2 would not train like the Keras model")
    if native.trainable != ks.trainable:
        raise ktb.RouteRejected(f"trainable parameters differ: Keras {ks.trainable:,}, .pt2 {native.trainable:,}")
    run_sets = sets if native.dynamic_batch else static_sets
    feeds = [[np.ascontiguousarray(to_layout(a, l, tl)) for a, l, tl in zip(s.arrays, ks.layouts, t_in)]
             for s in run_sets]
    with clock.step("check-plain-torch", "loading and running the .pt2 in a fresh process (keras/crossport blocked)"):
        outputs = ktb.run_keras_free(artifact_tmp, feeds, tmp / "worker")
    notes.append("the .pt2 was loaded and run in a fresh process where keras, tensorflow, crossport and onnx2torch "
                 "cannot be imported; those outputs are the ones verified")
    if options.nchw:
        notes.append("--nchw: rank-4 inputs/outputs are NCHW; the NHWC<->NCHW permutes are part of the model")
    hops = []
    if options.verify:
        with clock.step("verify", "verifying the plain-torch outputs against Keras"):
            runner = _Recorded(dict(zip((_digest(f) for f in feeds), outputs)), t_in, t_out, "pytorch (pt2 file)")
            hops.append(run_hop(ks.runner, runner, run_sets, ks.layouts, list(ks.output_names), tol))
    verified = options.verify
    passed = verified and all(h.passed for h in hops)
    written = passed or not verified or options.force and may_force
    if written:
        _publish(artifact_tmp, output, options.force)
    if any(in_nhwc) and not options.nchw:
        notes.append("layout: the PyTorch model keeps the source's NHWC for image tensors; pass --nchw for "
                     "channels-first")
    from converter.to_torch.pipeline import LoadedSource

    shim = LoadedSource(ks.runner, ks.specs, ks.layouts, ks.dynamic_batch, artifact_tmp, "torch.export", None,
                        ks.output_names, None, ())
    in_infos, out_infos = _tensor_infos(shim, hops, list(ks.output_names), ks.runner.output_layouts, t_in, t_out,
                                        native.dynamic_batch)
    report = ConversionReport(
        source=source, source_format=fmt.value, target=target, output=str(output) if written else None,
        route=(fmt.value, "keras 3 (torch backend, worker process)", "torch.export (.pt2)"), opset=None,
        exporter="torch.export of the Keras model (KERAS_BACKEND=torch)", inputs=in_infos, outputs=out_infos,
        dynamic_batch=native.dynamic_batch, verified=verified, passed=passed,
        forced=written and verified and not passed, hops=tuple(hops),
        input_sets=tuple(s.describe() for s in sets) if verified else (), atol=options.atol, rtol=options.rtol,
        timings=dict(clock.timings), versions=_versions(("crossport", "torch", "keras", "tensorflow", "numpy")),
        trainable_params={"pytorch": native.trainable, "keras": ks.trainable}, notes=tuple(notes),
        route_name="keras-native",
    )
    return ConversionResult(output if written else None, report)


def _digest(feeds: Sequence[np.ndarray]) -> str:
    import hashlib

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
