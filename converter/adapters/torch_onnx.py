"""Adapter around ``torch.onnx.export`` — every workaround for the PyTorch exporter lives here.

- The dynamo exporter's default optimizer folds BatchNorm into the preceding Conv/Gemm (onnxscript rewrite rules
  ``FuseBatchNormInto*``). That loses the BatchNorm parameters, so a Keras model built from the graph would have
  fewer trainable weights than the PyTorch model. We export unoptimized and run the same optimizer without the
  fusion rules (nor the ``RemoveOptionalBias*`` rules, which drop all-zero biases). Its
  ``DeduplicateInitializersPass`` merges weights that happen to be equal (every freshly
  initialised LayerNorm has gamma = 1, beta = 0), so one layer's weight name ends up on another and the Keras
  layers get the wrong PyTorch names; we skip that pass too.
- Its constant folding turns a lookup of a parameter at constant positions (HF BERT's position embeddings read at
  0..S-1) or a parameter expanded to a static shape (a class token) into a new constant: the parameter leaves the
  graph and the converted model trains fewer weights. Such reads (``_PARAMETER_READS``) are never folded.
- ``torch.export`` specializes a dimension whose example size is 1 (upstream.md), so a dynamic batch is traced
  with batch 2.
- ``adaptive_avg_pool2d`` on a tensor that is not contiguous (ConvNeXt pools the result of a permute) is
  decomposed by the exporter into ``mean`` + ``as_strided``, lowered to ONNX as Shape -> Range -> Gather over the
  batch: a batch-dependent index computation no converter can keep dynamic. A contiguous copy in front of the
  pool (free in ONNX) keeps the graph a plain ReduceMean. We export the module ourselves (``torch.export``,
  non-strict, as the exporter's first strategy does) so the pass can run on the program.
- Building the exporter's op registry asks each of onnxscript's ~500 trace-only torchlib functions for
  ``function_ir.domain``, and ``TracedOnnxFunction.function_ir`` re-parses the function's Python source on every
  access (onnxscript 0.7.2, ``_internal/values.py``): ~0.4-0.65 s per export, on the critical path of every
  conversion. The domain is always the function's opset domain (checked for all 497 functions with this stack),
  so during the export ``function_ir`` answers ``.domain`` from the opset and builds the real IR only if anything
  asks for more (``_cheap_traced_function_ir``).
- The same registry then infers the ONNX signature of all ~560 registered functions (``OnnxDecompMeta``'s
  ``__post_init__``, 0.11 s per export); torch 2.14's dispatcher picks a function without reading any signature,
  and the graph builder infers and caches the signature of each function it calls (``_building.eval_function``,
  the same inference), so the registry's are left to it (``_registry_signatures_on_demand``). Applied only while
  the dispatching module reads no ``signature`` attribute.
- torchlib compiles each of its ``@script`` functions from source when imported; they compile on first use
  instead (``converter.adapters.torchlib_lazy``).
- ``run_decompositions`` re-traces the whole program even when nothing needs decomposing (seconds per export);
  ``converter.adapters.torch_onnx_prepare`` skips it when the program is already translatable.
- The optimizer's rewrite rules decline a node of another op type before matching
  (``converter.adapters.rewrite_rule_gate``).
- Folded weight transposes stay non-contiguous numpy views, which the save writes element by element
  (``_transposed_weights_written_in_blocks``).
- TorchScript modules cannot go through dynamo; they use the legacy exporter (``dynamo=False``). Its EVAL mode
  also folds BatchNorm into Conv (``_jit_pass_onnx_eval_peephole``); PRESERVE on an eval-mode module keeps it.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from converter.adapters.rewrite_rule_gate import gated_by_root_op
from converter.adapters.torch_onnx_prepare import preparation_only_when_needed
from converter.adapters.torchlib_lazy import compiled_on_first_use
from converter.errors import ShapeError, UnsupportedError

OPSET = 18


@dataclass(frozen=True)
class ExportResult:
    path: Path
    exporter: str  # "dynamo" or "torchscript"
    opset: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_batch: bool


# Rules that delete trainable parameters: BatchNorm folded into Conv/Gemm, and all-zero biases removed (every
# freshly initialised torchvision ConvNeXt conv has a zero bias; the Keras layer would lose it).
_PARAMETER_DROPPING_RULES = ("FuseBatchNorm", "RemoveOptionalBias")
# Rules whose matching costs seconds and that never fire on the graphs the builder reads: SlicesSplit (Slices of one
# tensor -> Split) took 3.5 s of the rewriter's 4.8 s on ViT-B/16 (71 % of it, 0 rewrites; ResNet-18 0.01 s,
# measured by counting try_rewrite calls per rule, onnxscript 0.7.2). The builder translates Slice itself.
_SLOW_RULES = ("SlicesSplit",)


@contextlib.contextmanager
def _optimizer_keeping_parameters() -> Iterator[None]:
    """Temporarily drop onnxscript's BatchNorm-fusion rules, its slowest idle rule and initializer deduplication
    (module docstring)."""
    import onnx_ir.passes.common as common_passes
    from onnxscript import rewriter

    class _KeepInitializers(common_passes.DeduplicateInitializersPass):
        def call(self, model):  # noqa: ANN001, ANN201 - onnx_ir pass protocol
            import onnx_ir as ir

            return ir.passes.PassResult(model, modified=False)

    from onnxscript.optimizer import _constant_folding

    fold_pass = _constant_folding.FoldConstantsPass

    class _KeepParameterLookups(fold_pass):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["should_fold"] = _keeps_parameter
            super().__init__(*args, **kwargs)

    original = rewriter._DEFAULT_REWRITE_RULES  # noqa: SLF001 - no public switch for this (onnxscript 0.7)
    dropped = _PARAMETER_DROPPING_RULES + _SLOW_RULES
    kept = [gated_by_root_op(r) for r in original if not str(getattr(r, "name", "")).startswith(dropped)]
    dedup = common_passes.DeduplicateInitializersPass
    rewriter._DEFAULT_REWRITE_RULES = type(original)(kept) if isinstance(original, tuple) else kept  # noqa: SLF001
    common_passes.DeduplicateInitializersPass = _KeepInitializers
    _constant_folding.FoldConstantsPass = _KeepParameterLookups
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = original  # noqa: SLF001
        common_passes.DeduplicateInitializersPass = dedup
        _constant_folding.FoldConstantsPass = fold_pass


# Ops that read a parameter table at constant positions or copy it to a shape: folded, the table becomes a new
# constant and the parameter is gone from the graph (HF BERT's position embeddings at positions 0..S-1, ViT's
# class token expanded to a static batch). Kept, the builder makes them trainable Embedding lookups. Not Slice:
# the exporter slices every LSTM weight per gate and direction, and keeping those (300 Slices for a tiny
# sequencer2d) made the rewriter's pattern matching 4x slower (22 s -> 91 s) for no parameter kept.
_PARAMETER_READS = ("Gather", "Expand")


def _keeps_parameter(node: Any) -> bool | None:
    """``should_fold`` for onnxscript's constant folding: never fold a read of a trainable initializer."""
    if node.op_type in _PARAMETER_READS and node.inputs and node.inputs[0] is not None:
        first = node.inputs[0]
        if first.is_initializer() and first.const_value is not None and first.dtype is not None \
                and first.dtype.is_floating_point():
            return False
    return None


@contextlib.contextmanager
def _cheap_traced_function_ir() -> Iterator[None]:
    """See the module docstring: ``TracedOnnxFunction.function_ir`` answers ``.domain`` without re-parsing."""
    try:
        from onnxscript._internal.values import TracedOnnxFunction
    except ImportError:  # another onnxscript layout: no shortcut
        yield
        return
    original = TracedOnnxFunction.__dict__.get("function_ir")
    if not isinstance(original, property):
        yield
        return

    class _LazyIR:
        __slots__ = ("_fn", "domain")

        def __init__(self, fn: Any) -> None:
            self._fn = fn
            self.domain = fn.opset.domain

        def __getattr__(self, name: str) -> Any:  # anything beyond the domain: the real IR
            return getattr(original.fget(self._fn), name)

    TracedOnnxFunction.function_ir = property(_LazyIR)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        TracedOnnxFunction.function_ir = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _registry_signatures_on_demand() -> Iterator[None]:
    """See the module docstring: torchlib's registry entries skip signature inference during the export."""
    try:
        from torch.onnx._internal.exporter import _dispatching, _registration
    except ImportError:  # another torch layout: no shortcut
        yield
        return
    meta_cls = getattr(_registration, "OnnxDecompMeta", None)
    original = getattr(meta_cls, "__post_init__", None)
    reads_signatures = any(_names_read(getattr(f, "__code__", None)) & {"signature", "_pt_onnx_signature"}
                           for f in vars(_dispatching).values() if callable(f)
                           and getattr(f, "__module__", "") == _dispatching.__name__)
    if original is None or reads_signatures:
        yield
        return

    def post_init(self: Any) -> None:
        if self.is_custom or self.signature is not None or self.skip_signature_inference:
            original(self)  # a user's custom translation: inferred (and its failure reported) as before

    meta_cls.__post_init__ = post_init
    try:
        yield
    finally:
        meta_cls.__post_init__ = original


def _names_read(code: Any) -> set[str]:
    """Every global and attribute name a function's code (and the comprehensions nested in it) refers to."""
    if code is None:
        return {"signature"}  # not plain Python: assume the worst
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names_read(const)
    return names


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporter prints progress lines and warnings to stdout, and onnxscript's optimizer logs the nodes it could
    not evaluate while folding ("Evaluation failed: ...", harmless: the node stays); keep them off the terminal."""
    import logging

    from converter.frameworks import _VERBOSE

    if _VERBOSE:
        yield
        return
    # onnxscript's constant folder logs "Evaluation failed: cannot reshape ..." through logging's last-resort
    # handler (stderr) when it declines to fold a node -- harmless, and not the user's business.
    folder = logging.getLogger("onnxscript")
    level = folder.level
    folder.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        folder.setLevel(level)


def _transposed_weights_written_in_blocks(model: Any) -> None:
    """Constant folding leaves a folded ``Transpose`` of a weight as a transposed numpy *view*; onnx_ir writes it
    with ``ndarray.tofile``, which walks a non-contiguous array element by element: 36 such weights of ViT-B/16
    took 1.0 s of a 1.05 s save. A whole contiguous copy first costs nearly as much (226 MB of fresh pages); written
    in contiguous blocks of rows through one small buffer (``_BlockwiseTensor``) the save takes 0.39 s
    (``benchmarks/io_paths.py``). The bytes written are the same."""
    import numpy as np
    import onnx_ir as ir

    from converter.array_io import write_c_order

    class _BlockwiseTensor(ir.Tensor):  # type: ignore[misc, valid-type]
        def tofile(self, file: Any) -> None:
            write_c_order(file, self.raw, _BLOCK_BYTES)

    for value in model.graph.initializers.values():
        tensor = value.const_value
        raw = getattr(tensor, "raw", None)
        if isinstance(tensor, ir.Tensor) and isinstance(raw, np.ndarray) and raw.ndim \
                and not raw.flags.c_contiguous and raw.dtype.kind in "fiub":
            value.const_value = _BlockwiseTensor(raw, dtype=tensor.dtype, name=tensor.name,
                                                 doc_string=tensor.doc_string, metadata_props=tensor.metadata_props)


_BLOCK_BYTES = 4 << 20


def _names(count: int, given: Sequence[str], stem: str) -> list[str]:
    if given and len(given) == count:
        return [str(n) for n in given]
    return [stem if count == 1 else f"{stem}{i}" for i in range(count)]


def export(
    module: Any,
    example_inputs: tuple[Any, ...],
    path: Path,
    *,
    n_outputs: int,
    input_names: Sequence[str] = (),
    output_names: Sequence[str] = (),
    dynamic_batch: bool = True,
    is_torchscript: bool = False,
    external_data: bool = False,
) -> ExportResult:
    """Export ``module`` to ONNX at ``path``; raises ``UnsupportedError`` naming the op the exporter rejected.

    ``external_data`` writes the weights to ``<path>.data`` tensor by tensor: a single-file save first builds the
    whole ModelProto and its serialized bytes (measured on ViT-B/16, 331 MB of weights: +1.3 GB RSS at the save;
    with external data it stays flat). Only for an intermediate file -- a published ``.onnx`` stays one file.
    ``n_outputs``: how many tensors the model returned when the caller ran it on ``example_inputs``
    (``converter.parity.runners.TorchRunner`` refuses non-tensor outputs there); the export does not run it again
    (a second forward pass costs up to a second on a large model)."""
    import torch

    n_in = len(example_inputs)
    names_in = _names(n_in, input_names, "input")
    names_out = _names(n_outputs, output_names, "output")
    if is_torchscript:
        return _export_legacy(module, example_inputs, path, names_in, names_out, dynamic_batch)
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=65536)
        dynamic_shapes = tuple({0: batch} if t.dim() > 0 else None for t in example_inputs)
    try:
        with _quiet(), compiled_on_first_use(), _cheap_traced_function_ir(), _registry_signatures_on_demand(), \
                preparation_only_when_needed():
            program_in = _contiguous_before_adaptive_pools(_as_program(module, example_inputs, dynamic_shapes))
            program = torch.onnx.export(
                program_in, example_inputs, dynamo=True, optimize=False, opset_version=OPSET,
                input_names=names_in, output_names=names_out, dynamic_shapes=dynamic_shapes,
                verbose=False, report=False,
            )
            with _optimizer_keeping_parameters():
                program.optimize()
            _transposed_weights_written_in_blocks(program.model)
            program.save(str(path), external_data=external_data)
    except Exception as err:  # noqa: BLE001 - the exporter raises many types; we classify below
        text = str(err)
        if dynamic_batch and ("Constraints violated" in text or "specialized" in text or "guard" in text.lower()):
            # The model fixes its batch size somewhere (e.g. a view(2, ...)); export with a static batch instead.
            return export(module, example_inputs, path, input_names=input_names, dynamic_batch=False,
                          external_data=external_data, n_outputs=n_outputs)
        if "shape" in text.lower() and ("mismatch" in text.lower() or "size" in text.lower()):
            raise ShapeError(f"the model does not run on the given input shapes: {_first_line(text)}") from err
        raise UnsupportedError(f"torch.onnx.export (dynamo) failed: {_first_line(text)}") from err
    return ExportResult(path, "dynamo", OPSET, tuple(names_in), tuple(names_out), dynamic_batch)


def _as_program(module: Any, example_inputs: tuple[Any, ...], dynamic_shapes: Any) -> Any:
    import torch

    if isinstance(module, torch.export.ExportedProgram):
        return module
    return torch.export.export(module, example_inputs, dynamic_shapes=dynamic_shapes, strict=False)


_ADAPTIVE_POOLS = ("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default",
                   "aten.adaptive_max_pool2d.default", "aten.adaptive_avg_pool1d.default")


def _contiguous_before_adaptive_pools(program: Any) -> Any:
    """Feed adaptive pools a contiguous tensor (see module docstring); the program is changed in place."""
    import torch

    graph = program.graph_module.graph
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function" or str(node.target) not in _ADAPTIVE_POOLS:
            continue
        src = node.args[0]
        val = getattr(src, "meta", {}).get("val")
        if val is None or _surely_contiguous(val):
            continue
        with graph.inserting_before(node):
            copy = graph.call_function(torch.ops.aten.clone.default, (src,),
                                       {"memory_format": torch.contiguous_format})
        copy.meta = {**src.meta, "val": val.clone(memory_format=torch.contiguous_format)}
        node.replace_input_with(src, copy)
        changed = True
    if changed:
        program.graph_module.recompile()
    return program


def _surely_contiguous(val: Any) -> bool:
    """``val.is_contiguous()`` without asking the program's shape environment: on a symbolic batch that call
    records a guard (is the batch 1?), and recording one imports ``torch._inductor`` and ``torch.export._trace`` to
    name the guard's source line -- 16 MB that stay resident in a conversion whose graph has an adaptive pool
    (memray, MobileNetV3). Unknown is "not contiguous": the copy this adds is free in ONNX."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    expected: Any = 1
    for size, stride in reversed(list(zip(val.shape, val.stride()))):
        if not statically_known_true(size == 1) and not statically_known_true(stride == expected):
            return False
        expected = expected * size
    return True


def _export_legacy(module, example_inputs, path, names_in, names_out, dynamic_batch) -> ExportResult:
    import torch

    axes = {n: {0: "batch"} for n in [*names_in, *names_out]} if dynamic_batch else None
    try:
        with _quiet():
            torch.onnx.export(
                module, example_inputs, str(path), dynamo=False, opset_version=17,
                input_names=names_in, output_names=names_out, dynamic_axes=axes,
                do_constant_folding=True, training=torch.onnx.TrainingMode.PRESERVE,
            )
    except Exception as err:  # noqa: BLE001
        raise UnsupportedError(f"torch.onnx.export (TorchScript) failed: {_first_line(str(err))}") from err
    return ExportResult(path, "torchscript", 17, tuple(names_in), tuple(names_out), dynamic_batch)


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.startswith(("Traceback", "File ")):
            return line[:300]
    return text[:300]
