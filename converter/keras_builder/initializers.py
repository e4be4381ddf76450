"""The ONNX graph's initializers as NumPy arrays, those in an external data file mapped rather than copied.

Why: the builder reads the intermediate ONNX the PyTorch worker just wrote, weights in ``model.onnx.data``.
``onnx.load`` copies every weight into the protobuf (read, then into the message) and ``numpy_helper.to_array``
once more out of it -- three copies of 330 MB for ViT-B/16, ~0.9 s of ``build-keras`` on the 2-core machine,
before any layer takes its own copy. Loaded with ``load_external_data=False``, the graph is a few hundred KB and
each weight here is a read-only view of the mapped file (in the page cache: the worker wrote it moments ago).
What needs the weights inside the protobuf (the probe's onnxruntime run) loads them with ``load_data``.
"""
from __future__ import annotations

import mmap
import os
from typing import Any

import numpy as np


def arrays(model: Any, base_dir: str | None) -> dict[str, np.ndarray]:
    """``{name: value}`` of every initializer; external ones (relative to ``base_dir``) as views of the file."""
    from onnx import numpy_helper
    from onnx.external_data_helper import uses_external_data

    maps: dict[str, Any] = {}
    out: dict[str, np.ndarray] = {}
    try:
        for init in model.graph.initializer:
            view = _mapped(init, base_dir, maps) if base_dir and uses_external_data(init) else None
            out[init.name] = view if view is not None else numpy_helper.to_array(init, base_dir or "")
    finally:
        maps.clear()  # the arrays keep their mapping alive; nothing else holds it
    return out


def load_data(model: Any, base_dir: str | None) -> None:
    """Put external weights into the protobuf itself (what ``onnx.load`` does by default), for a serialization."""
    if not base_dir:
        return
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    for init in model.graph.initializer:
        if uses_external_data(init):
            load_external_data_for_tensor(init, base_dir)


def _mapped(init: Any, base_dir: str, maps: dict[str, Any]) -> np.ndarray | None:
    """A read-only view of ``init``'s bytes in its data file, or None where a plain read is the safe answer (a
    location that is not a file beside the model, an odd dtype, a size that does not match the dims)."""
    from onnx.external_data_helper import ExternalDataInfo
    from onnx.helper import tensor_dtype_to_np_dtype

    info = ExternalDataInfo(init)
    location = info.location
    if not location or os.path.basename(location) != location or location in (".", ".."):
        return None
    try:
        dtype = np.dtype(tensor_dtype_to_np_dtype(init.data_type))
    except (KeyError, TypeError, ValueError):
        return None
    if dtype.kind not in "biuf" or dtype.byteorder == ">":
        return None
    count = int(np.prod(tuple(init.dims), dtype=np.int64))
    offset = info.offset or 0
    if info.length is not None and info.length != count * dtype.itemsize:
        return None
    if location not in maps:
        path = os.path.join(base_dir, location)
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            maps[location] = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.path.getsize(path) else b""
    data = maps[location]
    if offset + count * dtype.itemsize > len(data):
        return None
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(tuple(init.dims))
