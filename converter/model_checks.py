"""Content checks shared by convert and verify, made before a model is run: ops from domains nothing can run,
and weights holding NaN/Inf (a model whose outputs are not finite cannot be verified)."""
from __future__ import annotations

import zipfile
from typing import Any

from converter.errors import ModelFileError


STANDARD_ONNX_DOMAINS = ("", "ai.onnx", "ai.onnx.ml", "com.microsoft")


def custom_domain_ops(model: Any) -> list[str]:
    """``domain:OpType`` of every node outside the standard ONNX domains (onnxruntime's contrib ops included).

    Such an op has no converter and no reference implementation, so it is named up front instead of surfacing as
    onnxruntime's "is not a registered function/op" half-way through a run."""
    found: list[str] = []
    local = {f.name for f in getattr(model, "functions", [])}
    for node in model.graph.node:
        if node.domain not in STANDARD_ONNX_DOMAINS and node.op_type not in local:
            tag = f"{node.domain}:{node.op_type}"
            if tag not in found:
                found.append(tag)
    return found


def check_onnx_ops(model: Any, source: str) -> None:
    from converter.errors import UnsupportedError

    custom = custom_domain_ops(model)
    if custom:
        raise UnsupportedError(f"{source}: uses custom-domain op(s) {', '.join(custom)}; no runtime or converter "
                               "implements them. Export the model without custom ops (standard ONNX opsets only)")


def nonfinite_weights(named: Any, inf_ok: bool = False) -> list[tuple[str, int, int]]:
    """(name, NaN count, Inf count) for each float array in ``named`` (pairs of name and array-like) that holds
    non-finite values. ``inf_ok``: only NaN counts (ONNX initializers and torch buffers may hold -inf masks)."""
    import numpy as np

    bad = []
    for name, value in named:
        arr = np.asarray(value)
        if arr.dtype.kind != "f" or arr.size == 0:
            continue
        nans = int(np.count_nonzero(np.isnan(arr)))
        infs = 0 if inf_ok else int(np.count_nonzero(np.isinf(arr)))
        if nans or infs:
            bad.append((name, nans, infs))
    return bad


def raise_if_nonfinite(source: str, bad: list[tuple[str, int, int]], hint: str) -> None:
    """One line naming the first broken tensor and how many are affected: verifying such a model compares NaN with
    NaN, which proves nothing, so it is refused before any conversion work."""
    if not bad:
        return
    name, nans, infs = bad[0]
    more = f" (and {len(bad) - 1} more tensor(s))" if len(bad) > 1 else ""
    raise ModelFileError(f"{source}: weight {name!r} holds {nans} NaN and {infs} Inf value(s){more}; its outputs "
                         f"cannot be verified. Fix or retrain the model{hint}")


def torch_nonfinite(module: Any) -> list[tuple[str, int, int]]:
    """Parameters must be finite; buffers only NaN-free (attention masks legitimately hold -inf)."""
    try:
        params = [(n, p.detach().cpu().numpy()) for n, p in module.named_parameters()]
        buffers = [(n, b.detach().cpu().numpy()) for n, b in module.named_buffers()
                   if b.dtype.is_floating_point]
    except Exception:  # noqa: BLE001 - a ScriptModule/GraphModule may not expose everything; nothing to check
        return []
    return nonfinite_weights(params) + nonfinite_weights(buffers, inf_ok=True)


def onnx_nonfinite(model: Any) -> list[tuple[str, int, int]]:
    from onnx import numpy_helper

    arrays = []
    for init in model.graph.initializer:
        try:
            arrays.append((init.name, numpy_helper.to_array(init)))
        except Exception:  # noqa: BLE001 - external data not loaded, exotic dtypes: not ours to judge here
            continue
    return nonfinite_weights(arrays, inf_ok=True)


def keras_file_nonfinite(path: str) -> list[tuple[str, int, int]]:
    """Scan the weights of a ``.keras`` / ``.h5`` file with h5py only: nothing in the file is deserialized into
    Python objects, so this runs no code from it. An unreadable file yields [] and is reported by the loader."""
    import io

    try:
        import h5py
    except ImportError:
        return []
    found: list[tuple[str, Any]] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
            found.append((name, obj[()]))

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                if "model.weights.h5" not in zf.namelist():
                    return []
                data = io.BytesIO(zf.read("model.weights.h5"))
            with h5py.File(data, "r") as h5:
                h5.visititems(visit)
        else:
            with h5py.File(path, "r") as h5:
                h5.visititems(visit)
    except Exception:  # noqa: BLE001 - corrupt files are the loader's to report, with its own message
        return []
    return nonfinite_weights(found)
