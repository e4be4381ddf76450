"""Sources for PyTorch targets: a Keras file (loaded once, the reference for every route), a SavedModel or an ONNX
file, each as a ``LoadedSource`` -- an ONNX file plus the runner verification compares against.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from converter.conversion.job import Clock, ConvertOptions
from converter.conversion.sources import load_onnx
from converter.errors import ShapeError
from converter.layout import Layout
from converter.memory import release_memory
from converter.parity.inputs import InputSpec, make_input_sets
from converter.parity.runners import Runner


@dataclass(frozen=True)
class LoadedSource:
    """The source model as a runner plus what verification needs to know about it."""

    runner: Runner | None  # a parity runner, or None for an ONNX source (onnxruntime is then the reference)
    specs: tuple[InputSpec, ...]
    layouts: tuple[Layout, ...]  # of the inputs, as the source takes them
    dynamic_batch: bool
    onnx_path: Path
    exporter: str
    opset: int | None
    output_names: tuple[str, ...]
    trainable_reference: tuple[np.ndarray, ...] | None  # the source's trainable weights, when it says
    notes: tuple[str, ...]
    layer_names: tuple[str, ...] = ()  # Keras layer names, for readable names in --emit-source


@dataclass
class _CallRunner:
    """A runner around a plain callable (the SavedModel signature)."""

    fn: Callable[[list[np.ndarray]], list[np.ndarray]]
    input_layouts: tuple[Layout, ...]
    output_layouts: tuple[Layout, ...]
    name: str

    def run(self, feeds: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(o) for o in self.fn(list(feeds))]


def image_layout(rank: int | None) -> Layout:
    return Layout.NHWC if rank == 4 else Layout.NONE


def _given_shapes(options: ConvertOptions) -> tuple[dict[str, tuple[int, ...]], list[tuple[int, ...]]]:
    named = {n: tuple(s) for n, s in options.input_shapes if n}
    unnamed = [tuple(s) for n, s in options.input_shapes if not n]
    return named, unnamed


def _specs_from_signature(sigs: list[Any], options: ConvertOptions,
                          bounds: dict[str, tuple[int, int]] | None = None) -> tuple[list[InputSpec], bool]:
    """Specs in the source's order; integer inputs get their ``--int-range`` or the model's own ``bounds``."""
    from converter.input_shapes import check_range_names, int_range_for

    check_range_names(options.int_ranges, [s.name for s in sigs])
    dynamic = any(s.shape and s.shape[0] is None for s in sigs) and not options.static_batch
    specs = []
    for s in sigs:
        dims = list(s.shape)
        if dims and dims[0] is None:
            dims[0] = 2
        if any(d is None for d in dims):
            raise ShapeError(f"input {s.name!r} has unknown dimensions {tuple(s.shape)}; pass --input-shape "
                             f"{s.name}=" + "x".join(str(d or 8) for d in s.shape))
        if dynamic and dims and dims[0] == 1:
            dims[0] = 2  # torch.export specializes a dimension whose example size is 1
        dtype = "float32" if "float" in s.dtype else s.dtype
        specs.append(InputSpec(s.name, tuple(int(d) for d in dims), dtype,
                               int_range_for(s.name, options.int_ranges, (bounds or {}).get(s.name))))
    return specs, dynamic


@dataclass(frozen=True)
class KerasSource:
    """A Keras model loaded once (TensorFlow backend): the verification reference for every route."""

    model: Any
    sigs: tuple[Any, ...]  # converter.adapters.tf_onnx.TfSignature, batch None when dynamic
    runner: Runner
    specs: tuple[InputSpec, ...]
    layouts: tuple[Layout, ...]
    dynamic_batch: bool
    output_names: tuple[str, ...]
    trainable: int  # Keras' trainable element count


def load_keras_source(source: str, options: ConvertOptions, clock: Clock) -> KerasSource:
    from converter.adapters import tf_onnx
    from converter.adapters.keras_load import load_keras

    with clock.step("load", f"loading {source} (safe_mode={'off' if options.trust_code else 'on'})"):
        model = load_keras(source, options.trust_code)
    from converter import keras_io

    named, unnamed = _given_shapes(options)
    sigs = tf_onnx.keras_signature(model, named or unnamed)
    given_sigs = sigs
    if (named or unnamed) and not options.static_batch:
        sigs = _batch_kept_open(model, sigs)
    specs, dynamic = _specs_from_signature(sigs, options, keras_io.integer_bounds(model))
    if named or unnamed:  # the sample inputs keep the batch the user gave (2 for 1: torch.export specializes 1)
        specs = [replace(sp, shape=(2 if dynamic and g.shape[0] == 1 else int(g.shape[0]), *sp.shape[1:]))
                 if g.shape and g.shape[0] is not None else sp for sp, g in zip(specs, given_sigs)]
    if options.static_batch:
        sigs = [tf_onnx.TfSignature(s.name, sp.shape, s.dtype) for s, sp in zip(sigs, specs)]
    layouts = tuple(image_layout(len(s.shape)) for s in specs)

    def call(feeds: list[np.ndarray]) -> list[np.ndarray]:
        out = model(keras_io.pack(model, feeds), training=False)
        return [np.asarray(o) for o in keras_io.flatten(out)]

    runner = _CallRunner(call, layouts, (), name="keras")
    probe = runner.run(list(make_input_sets(specs, seed=options.seed)[0].arrays))
    runner.output_layouts = tuple(image_layout(o.ndim) for o in probe)
    names = keras_io.output_names(model, len(probe))
    trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return KerasSource(model, tuple(sigs), runner, tuple(specs), layouts, dynamic, names, trainable)


def _batch_kept_open(model: Any, sigs: list[Any]) -> list[Any]:
    """``--input-shape`` sizes the inputs; the batch stays dynamic where the model leaves it open (as for an ONNX
    source), unless ``--static-batch``."""
    from converter.adapters.tf_onnx import TfSignature

    own = [tuple(t.shape) for t in (getattr(model, "inputs", None) or ())]
    if len(own) != len(sigs):
        return sigs
    return [TfSignature(s.name, (None, *s.shape[1:]), s.dtype)
            if o and o[0] is None and len(o) == len(s.shape) else s for s, o in zip(sigs, own)]


def keras_onnx_source(ks: KerasSource, tmp: Path, clock: Clock) -> LoadedSource:
    """The ONNX route's first hop for a Keras source: tf2onnx export of the loaded model."""
    from converter.adapters import tf_onnx

    onnx_path = tmp / "model.onnx"
    with clock.step("export-onnx", "exporting to ONNX (tf2onnx)"):
        export = tf_onnx.keras_to_onnx(ks.model, list(ks.sigs), onnx_path)
        release_memory()
    from converter.adapters.tf_onnx_repair import all_layers

    names = tuple(l.name for l in all_layers(ks.model))
    return LoadedSource(ks.runner, ks.specs, ks.layouts, ks.dynamic_batch and export.dynamic_batch, onnx_path,
                        export.exporter, export.opset, export.output_names, export.trainable, export.notes, names)


def load_saved_model_source(source: str, options: ConvertOptions, tmp: Path, clock: Clock) -> LoadedSource:
    from converter.adapters import tf_onnx

    named, unnamed = _given_shapes(options)
    onnx_path = tmp / "model.onnx"
    with clock.step("export-onnx", f"loading {source} and exporting its serving_default signature (tf2onnx)"):
        export, sigs, call = tf_onnx.saved_model_to_onnx(source, unnamed or list(named.values()), onnx_path)
        release_memory()
    specs, dynamic = _specs_from_signature(sigs, options)
    layouts = tuple(image_layout(len(s.shape)) for s in specs)
    runner = _CallRunner(call, layouts, (), name="tf-savedmodel")
    probe = runner.run(list(make_input_sets(specs, seed=options.seed)[0].arrays))
    runner.output_layouts = tuple(image_layout(o.ndim) for o in probe)
    notes = export.notes if export.trainable is not None else (
        *export.notes, "the SavedModel does not list trainable variables; weights were chosen by their ONNX "
                       "consumers (Conv/MatMul/Gemm kernels and biases, normalization scale/bias, embeddings, RNNs)")
    return LoadedSource(runner, tuple(specs), layouts, dynamic and export.dynamic_batch, onnx_path, export.exporter,
                        export.opset, export.output_names, export.trainable, notes)


def load_onnx_source(source: str, options: ConvertOptions, tmp: Path, clock: Clock) -> LoadedSource:
    import onnx

    from converter.adapters.tf_onnx import TfSignature

    with clock.step("load", f"loading {source}"):
        model = load_onnx(source)
    init = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in init]
    named, unnamed = _given_shapes(options)
    sigs = []
    for k, gi in enumerate(inputs):
        tt = gi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        given = named.get(gi.name) or (unnamed[k] if k < len(unnamed) else None)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type).name
        if given and dims and dims[0] is None and not options.static_batch:
            given = (None, *given[1:])  # --input-shape fills the other dims; a symbolic batch stays symbolic
        sigs.append(TfSignature(gi.name, tuple(given) if given else dims, dtype))
    dynamic_src = any(s.shape and s.shape[0] is None for s in sigs)
    specs, dynamic = _specs_from_signature(sigs, options)
    onnx_path = tmp / "model.onnx"
    onnx.save(model, str(onnx_path))  # one self-contained file: the source may keep weights in a .data file
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    layouts = tuple(Layout.NONE for _ in specs)  # an ONNX file's own order, whatever it is
    return LoadedSource(None, tuple(specs), layouts, dynamic and dynamic_src, onnx_path, "given", opset,
                        tuple(o.name for o in model.graph.output), None, ())
