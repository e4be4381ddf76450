"""Prove a rewrite: build the original torch model and the rewritten Keras model, move the weights, compare.

Runs user code (both files) — callers reach this only through an explicit --verify/transfer opt-in.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import re

import numpy as np

from converter.errors import ModelClassError, ShapeError
from converter.parity.compare import DEFAULT_SCALE, OutputComparison, Tolerance, compare_arrays
from converter.reporting import MODE, Report
from converter.rewrite.loading import build, import_code, import_file, parse_init_kwargs
from converter.rewrite.options import RewriteResult
from converter.rewrite.todo_flow import TodoReach, format_reach, reach


@dataclass(frozen=True)
class VerifyOptions:
    input_shapes: tuple[tuple[int, ...], ...]
    class_name: str | None = None
    init_kwargs_json: str | None = None
    atol: float = 1e-4
    rtol: float = 1e-4
    seed: int = 0
    #: the plain |a-b| <= atol + rtol*|b|, without the term relative to the output's RMS (as convert/verify's flag).
    elementwise: bool = False

    @property
    def tolerance(self) -> Tolerance:
        """The parity criterion of ``converter.parity.compare`` with these atol/rtol."""
        return Tolerance(self.atol, self.rtol, 0.0 if self.elementwise else DEFAULT_SCALE)


@dataclass(frozen=True)
class VerifyReport(Report):
    """One rewrite verification (``--verify``, ``crossport transfer``): a ``converter.reporting.Report``."""

    class_name: str
    layout: str
    rows: tuple[OutputComparison, ...]
    inputs: tuple[str, ...]
    permuted_dense: tuple[str, ...] = field(default=())
    #: outputs that differed between two runs of the original on the same input (sampled noise): not compared.
    stochastic: tuple[str, ...] = field(default=())
    #: per remaining TODO of the rewrite, the outputs whose computation it lies on (``todo_flow``).
    todo_reach: tuple[TodoReach, ...] = field(default=())

    @property
    def n_outputs(self) -> int:
        found = {int(r.name.rsplit(":out", 1)[1]) for r in self.rows} | {int(s[3:]) for s in self.stochastic}
        return max(found) + 1 if found else 0

    @property
    def passed(self) -> bool:
        return bool(self.rows) and all(r.passed for r in self.rows)

    @property
    def max_abs_error(self) -> float:
        return max((r.max_abs_error for r in self.rows), default=float("inf"))

    def to_dict(self) -> dict[str, Any]:
        """What the text table says, for ``to_json`` (strict JSON: no inf/nan)."""
        return {
            "kind": "rewrite-verify", "class": self.class_name, "layout": self.layout, "mode": MODE,
            "passed": self.passed, "max_abs_error": self.max_abs_error, "inputs": list(self.inputs),
            "outputs": [r.to_dict() for r in self.rows], "permuted_dense": list(self.permuted_dense),
            "stochastic": list(self.stochastic),
            "todo_reach": [{"todo": t.label, "why": t.todo.why, "outputs": list(t.outputs)} for t in self.todo_reach],
        }


def with_todo_reach(report: VerifyReport, result: RewriteResult, entry: str) -> VerifyReport:
    """``report`` saying which outputs each TODO left in ``result`` can affect."""
    if not result.todos:
        return report
    return replace(report, todo_reach=reach(result.code, result.todos, entry, report.n_outputs))


def choose_class(result: RewriteResult, requested: str | None) -> str:
    if requested:
        if requested not in result.model_classes:
            raise ModelClassError(f"--class {requested}: not a model class/builder in {result.filename} "
                                  f"(found: {', '.join(result.model_classes) or 'none'})")
        return requested
    if not result.model_classes:
        what = "Keras model (class, Sequential or functional builder)" if result.to == "torch" else "nn.Module subclass"
        raise ModelClassError(f"{result.filename}: no {what} to verify")
    if len(result.top_models) != 1:
        raise ModelClassError(f"{result.filename}: several candidate models ({', '.join(result.top_models)}); pass --class")
    return result.top_models[0]


def sample_batches(shapes: Sequence[tuple[int, ...]], seed: int,
                   int_high: int | None) -> list[tuple[str, list[np.ndarray]]]:
    """(label, arrays) for the input sets of ``converter.parity.inputs`` (normal, then uniform; seeds ``seed``,
    ``seed + 1``): a model agreeing only on one distribution is not verified. ``int_high``: integer tokens in
    ``[0, int_high)`` for every input (a model with an embedding)."""
    from converter.parity.inputs import InputSpec, make_input_sets

    dtype = "float32" if int_high is None else "int64"
    specs = [InputSpec(f"input{i}", tuple(shape), dtype, (0, int_high or 1)) for i, shape in enumerate(shapes)]
    kind = "{}" if int_high is None else f"int[0,{int_high})"
    return [(f"{kind.format(s.distribution)}(seed={s.seed})", list(s.arrays)) for s in make_input_sets(specs, seed)]


def _flat_outputs(value: Any) -> list[Any]:
    if isinstance(value, (list, tuple)):
        return [x for v in value for x in _flat_outputs(v)]
    if isinstance(value, dict):
        return [x for key in sorted(value) for x in _flat_outputs(value[key])]
    return [value]


def stochastic_outputs(run: Any, reseed: Any) -> set[int]:
    """Indices of the outputs that differ between two runs of the reference on the same input.

    A model that samples noise in its forward pass (a VAE's reparameterization) cannot agree with its rewrite on
    those outputs however faithful the rewrite is; the deterministic ones are still compared. ``reseed(i)`` seeds
    the framework's generator before run ``i`` so the two runs draw different noise."""
    reseed(1)
    first = [np.asarray(a) for a in run()]
    reseed(2)
    second = [np.asarray(a) for a in run()]
    return {i for i, (a, b) in enumerate(zip(first, second)) if a.shape != b.shape or not np.array_equal(a, b)}


def stochastic_names(indices: set[int]) -> tuple[str, ...]:
    return tuple(f"out{i}" for i in sorted(indices))


def _keras_runner(model: Any, layout: str) -> Any:
    """Call the Keras model in inference mode.

    TensorFlow's eager CPU kernels implement Conv2D/pooling only for NHWC; XLA compiles NCHW fine, so
    channels_first models are run through ``tf.function(jit_compile=True)`` (as ``Model.predict`` does).
    """
    import keras

    if layout == "channels_first" and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(lambda *xs: model(*xs, training=False), jit_compile=True, reduce_retracing=True)
        return lambda xs: compiled(*xs)
    return lambda xs: model(*xs, training=False)


def verify_rewrite(source_path: Path, result: RewriteResult, options: VerifyOptions) -> VerifyReport:
    """Compare the torch class in ``source_path`` with its rewrite in ``result.code`` on seeded inputs."""
    from converter.frameworks import quiet_frameworks

    quiet_frameworks()
    from converter.frameworks import tensorflow

    tensorflow()  # imported with fd 2 silenced: TF's C++ registration noise never reaches the user
    import torch

    class_name = choose_class(result, options.class_name)
    kwargs = parse_init_kwargs(options.init_kwargs_json)
    torch.manual_seed(options.seed)
    original = build(import_file(source_path), class_name, kwargs, str(source_path))
    rewritten = build(import_code(result.code, f"<rewritten {source_path.name}>", source_path.parent), class_name, kwargs,
                      f"rewritten {source_path.name}")
    report = compare_models(original, rewritten, class_name=class_name, layout=result.layout_of(class_name),
                            spatial=class_name in result.spatial_classes, options=options, todos=len(result.todos))
    return with_todo_reach(report, result, class_name)


def _cause(err: Exception) -> str:
    """The informative line of an error; Keras wraps the real message in 'Exception encountered when calling'."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(err).splitlines()]
    lines = [ln for ln in lines if ln]
    if len(lines) > 1 and lines[0].startswith("Exception encountered"):
        return lines[1]
    return lines[0] if lines else ""


def compare_models(original: Any, rewritten: Any, *, class_name: str, layout: str, spatial: bool,
                   options: VerifyOptions, todos: int = 0) -> VerifyReport:
    """Run ``original`` once (materialising Lazy modules), build ``rewritten``, move weights, compare outputs."""
    import keras
    import torch

    from converter.weights import flatten_inputs, transfer_weights

    original.eval()
    embeddings = [m.num_embeddings for m in original.modules() if isinstance(m, torch.nn.Embedding)]
    batches = sample_batches(options.input_shapes, options.seed, min(embeddings) if embeddings else None)
    channels_last = layout == "channels_last" and spatial

    def to_keras(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, 1, -1) if channels_last and a.ndim >= 3 and a.dtype != np.int64 else a

    image_ranks = {len(s) for s in options.input_shapes if len(s) >= 3}

    def from_keras(a: np.ndarray) -> np.ndarray:
        # An output with the rank of an image input is taken to carry a channel axis (NHWC -> NCHW); a reduced
        # output (e.g. (N, H, W) after summing channels) is compared as it is.
        return np.moveaxis(a, -1, 1) if channels_last and a.ndim in image_ranks else a

    first = [torch.from_numpy(a) for a in batches[0][1]]
    try:
        with torch.no_grad():
            original(*first)  # also materialises Lazy* modules
    except Exception as err:  # noqa: BLE001
        raise ShapeError(f"the torch model failed on inputs {options.input_shapes} (check --input-shape): "
                         f"{type(err).__name__}: {err}") from None
    run_keras = _keras_runner(rewritten, layout)
    try:
        run_keras([to_keras(a) for a in batches[0][1]])
    except Exception as err:  # noqa: BLE001
        raise ShapeError(f"the rewritten Keras model failed on its first call: {type(err).__name__}: {_cause(err)}"
                         + (f" ({todos} TODO(s) remain in the rewritten code)" if todos else "")) from None
    flat = flatten_inputs(original, first) if channels_last else {}
    report = transfer_weights(original, rewritten, layout="channels_last" if channels_last else "channels_first",
                              flatten_inputs=flat)
    tol = options.tolerance

    def run_original() -> list[np.ndarray]:
        with torch.no_grad():
            return [t.detach().cpu().numpy() for t in _flat_outputs(original(*first))]

    noisy = stochastic_outputs(run_original, lambda i: torch.manual_seed(options.seed + i))
    torch.manual_seed(options.seed)
    rows: list[OutputComparison] = []
    for label, arrays in batches:
        with torch.no_grad():
            expected = _flat_outputs(original(*[torch.from_numpy(a) for a in arrays]))
        got = _flat_outputs(run_keras([to_keras(a) for a in arrays]))
        if len(got) != len(expected):
            raise ShapeError(f"torch returns {len(expected)} outputs, Keras {len(got)}")
        for i, (e, g) in enumerate(zip(expected, got)):
            if i in noisy:
                continue
            rows.append(compare_arrays(f"{label}:out{i}", from_keras(keras.ops.convert_to_numpy(g)),
                                       e.detach().cpu().numpy(), tol))
    return VerifyReport(class_name, layout, tuple(rows), tuple(b[0] for b in batches), report.permuted_dense,
                        stochastic_names(noisy))


def format_report(report: VerifyReport) -> str:
    """A per-output table; states eval mode, layout and the flatten permutations applied."""
    head = (f"verify {report.class_name}: torch eval() vs Keras training=False, layout {report.layout}"
            + (f", Dense rows permuted for: {', '.join(report.permuted_dense)}" if report.permuted_dense else ""))
    cols = f"{'output':<28} {'shape':<16} {'max_abs':>10} {'max_rel':>10} {'mismatch':>10} {'cosine':>9} {'atol/rtol':>15}  result"
    lines = [head, cols]
    for r in report.rows:
        shape = "x".join(str(d) for d in r.shape)
        lines.append(
            f"{r.name:<28} {shape:<16} {r.max_abs_error:>10.2e} {r.max_rel_error:>10.2e} "
            f"{f'{r.mismatches}/{r.total}':>10} {r.cosine_similarity:>9.6f} {f'{r.atol:.0e}/{r.rtol:.0e}':>15}  "
            + ("ok" if r.passed else f"FAIL (atol needed {r.atol_needed:.2e}) {r.note}".rstrip())
        )
    if report.stochastic:
        lines.append(f"stochastic outputs (differ between two runs of the original on the same input; not compared): "
                     f"{', '.join(report.stochastic)}" + ("" if report.rows else " -- no deterministic output is left "
                                                           "to compare"))
    lines += format_reach(report.todo_reach, report.n_outputs)
    lines.append(f"verify {'passed' if report.passed else 'FAILED'}: max abs error {report.max_abs_error:.3e}")
    return "\n".join(lines)
