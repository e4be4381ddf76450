"""Prove a ``--to torch`` rewrite: build the Keras original and the rewritten torch module, move the weights
Keras -> torch, feed the same seeded inputs (NHWC to Keras, NCHW to torch in conv models) and compare in eval mode.

Runs user code (both files): reached only through an explicit --verify / transfer opt-in.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from converter.errors import ShapeError
from converter.parity.compare import OutputComparison, compare_arrays
from converter.rewrite.loading import import_code, import_file, parse_init_kwargs
from converter.rewrite.options import RewriteResult
from converter.rewrite.verify import (VerifyOptions, VerifyReport, _cause, _flat_outputs, sample_batches, choose_class,
                                      stochastic_names, stochastic_outputs, with_todo_reach)

#: How the report names the layouts compared: Keras tensors are channels-last, the torch module's channels-first.
LAYOUT = "Keras NHWC -> torch NCHW"


def build_keras(source: Path, entry: str, kwargs: dict[str, Any], seed: int) -> Any:
    """The Keras original, in a fresh session (automatic layer names as the rewrite counted them)."""
    import keras

    from converter.rewrite.keras_probe import build_entry

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    return build_entry(import_file(source), entry, kwargs, str(source))


def verify_keras_rewrite(source_path: Path, result: RewriteResult, options: VerifyOptions) -> VerifyReport:
    """Compare the Keras model ``entry`` of ``source_path`` with its rewrite in ``result.code``."""
    from converter.frameworks import quiet_frameworks

    quiet_frameworks()
    from converter.frameworks import tensorflow

    tensorflow()  # imported with fd 2 silenced: TF's C++ registration noise never reaches the user
    import torch

    from converter.rewrite.keras_probe import build_entry

    entry = choose_class(result, options.class_name)
    kwargs = parse_init_kwargs(options.init_kwargs_json)
    original = build_keras(source_path, entry, kwargs, options.seed)
    torch.manual_seed(options.seed)
    rewritten = build_entry(import_code(result.code, f"<rewritten {source_path.name}>", source_path.parent), entry,
                            kwargs, f"rewritten {source_path.name}")
    report = compare_keras_torch(original, rewritten, name=entry, spatial=entry in result.spatial_classes,
                                 options=options, todos=len(result.todos))
    return with_todo_reach(report, result, entry)


def embedding_size(model: Any) -> int | None:
    import keras

    sizes = [layer.input_dim for layer in model._flatten_layers() if isinstance(layer, keras.layers.Embedding)]
    return min(sizes) if sizes else None


def compare_keras_torch(original: Any, rewritten: Any, *, name: str, spatial: bool, options: VerifyOptions,
                        todos: int = 0) -> VerifyReport:
    """Build both (the torch module's Lazy layers materialise on the first call), transfer, compare outputs."""
    import keras
    import torch

    from converter.weights import flatten_inputs, transfer_weights

    rewritten.eval()
    batches = sample_batches(options.input_shapes, options.seed, None)
    image_ranks = {len(s) for s in options.input_shapes if len(s) >= 3}

    def to_torch(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(np.moveaxis(a, -1, 1)) if spatial and a.ndim >= 3 else a)

    def from_torch(t: Any) -> np.ndarray:
        a = t.detach().cpu().numpy()
        return np.moveaxis(a, 1, -1) if spatial and a.ndim in image_ranks else a

    try:
        original(*batches[0][1], training=False)
    except Exception as err:  # noqa: BLE001 - user code
        raise ShapeError(f"the Keras model failed on inputs {options.input_shapes}: {type(err).__name__}: "
                         f"{_cause(err)}") from None
    vocabulary = embedding_size(original)
    if vocabulary is not None:
        batches = sample_batches(options.input_shapes, options.seed, vocabulary)
    first = [to_torch(a) for a in batches[0][1]]
    try:
        with torch.no_grad():
            rewritten(*first)
    except Exception as err:  # noqa: BLE001
        raise ShapeError(f"the rewritten torch module failed on its first call: {type(err).__name__}: {err}"
                         + (f" ({todos} TODO(s) remain in the rewritten code)" if todos else "")) from None
    flat = flatten_inputs(rewritten, first) if spatial else {}
    report = transfer_weights(original, rewritten, flatten_inputs=flat)
    tol = options.tolerance

    def run_original() -> list[np.ndarray]:
        return [np.asarray(keras.ops.convert_to_numpy(e)) for e in _flat_outputs(original(*batches[0][1], training=False))]

    noisy = stochastic_outputs(run_original, lambda i: keras.utils.set_random_seed(options.seed + i))
    rows: list[OutputComparison] = []
    for label, arrays in batches:
        expected = _flat_outputs(original(*arrays, training=False))
        with torch.no_grad():
            got = _flat_outputs(rewritten(*[to_torch(a) for a in arrays]))
        if len(got) != len(expected):
            raise ShapeError(f"Keras returns {len(expected)} outputs, torch {len(got)}")
        for i, (e, g) in enumerate(zip(expected, got)):
            if i in noisy:
                continue
            rows.append(compare_arrays(f"{label}:out{i}", from_torch(g), np.asarray(keras.ops.convert_to_numpy(e)), tol))
    return VerifyReport(name, LAYOUT if spatial else "no layout change", tuple(rows), tuple(b[0] for b in batches),
                        report.permuted_dense, stochastic_names(noisy))
