"""What TF Serving sees in a SavedModel: the ``serving_default`` signature read from ``saved_model.pb`` (the same
proto ``saved_model_cli show`` prints), the versioned layout, and a REST request body that fits the signature.

The report carries this so a user can check names, dtypes and shapes before deploying, and copy the request.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIGNATURE = "serving_default"


@dataclass(frozen=True)
class SignatureTensor:
    key: str  # the name a client uses in a request ("x") or finds in the response
    dtype: str  # TensorFlow's enum name, e.g. DT_FLOAT
    shape: tuple[int, ...] | None  # -1 = any size (the batch); None = unknown rank
    name: str  # the graph tensor, e.g. serving_default_x:0


@dataclass(frozen=True)
class ServingInfo:
    """The ``serving_default`` signature and, for ``--model-version``, where TF Serving finds it."""

    signature: str
    method_name: str
    tags: tuple[str, ...]
    inputs: tuple[SignatureTensor, ...]
    outputs: tuple[SignatureTensor, ...]
    base_path: str | None = None  # --model_base_path for tensorflow_model_server (versioned layout only)
    version: int | None = None

    def show_text(self) -> list[str]:
        """``saved_model_cli show --dir D --tag_set serve --signature_def serving_default``, line for line."""
        lines = ["The given SavedModel SignatureDef contains the following input(s):"]
        lines += _tensor_lines("inputs", self.inputs)
        lines.append("The given SavedModel SignatureDef contains the following output(s):")
        lines += _tensor_lines("outputs", self.outputs)
        lines.append(f"Method name is: {self.method_name}")
        return lines

    def rest_body(self, columnar: bool = False, abbreviate: int = 0) -> str:
        """A ``:predict`` request for one example of zeros: row format (``instances``) or columnar (``inputs``).
        ``abbreviate``: a tensor of more elements than that is written as ``"<dtype HxWxC>"`` (for the text report)."""
        def zeros(shape: tuple[int, ...] | None, batch: bool) -> Any:
            dims = [1 if d < 0 else d for d in (shape or ())][0 if batch else 1:]
            if abbreviate and int(np.prod(dims)) > abbreviate:
                return f"<{'x'.join(map(str, dims))} numbers>"
            value: Any = 0
            for d in reversed(dims):
                value = [value] * d
            return value

        if columnar:
            body: dict[str, Any] = {"signature_name": self.signature,
                                    "inputs": {t.key: zeros(t.shape, True) for t in self.inputs}}
        else:
            body = {"signature_name": self.signature,
                    "instances": [{t.key: zeros(t.shape, False) for t in self.inputs}]}
        return json.dumps(body, separators=(", ", ": "))

    def to_dict(self) -> dict[str, Any]:
        def tensors(ts: tuple[SignatureTensor, ...]) -> list[dict[str, Any]]:
            return [{"key": t.key, "dtype": t.dtype, "shape": list(t.shape) if t.shape is not None else None,
                     "name": t.name} for t in ts]

        return {"signature": self.signature, "method_name": self.method_name, "tags": list(self.tags),
                "inputs": tensors(self.inputs), "outputs": tensors(self.outputs), "base_path": self.base_path,
                "version": self.version}


def _tensor_lines(kind: str, tensors: tuple[SignatureTensor, ...]) -> list[str]:
    out = []
    for t in tensors:
        shape = "unknown_rank" if t.shape is None else "(" + ", ".join(map(str, t.shape)) + ("," if len(t.shape) == 1 else "") + ")"
        out += [f"  {kind}['{t.key}'] tensor_info:", f"      dtype: {t.dtype}", f"      shape: {shape}",
                f"      name: {t.name}"]
    return out


def read_serving_info(path: Path, version: int | None = None) -> ServingInfo:
    """Read ``path/saved_model.pb`` (the proto itself, as TF Serving and ``saved_model_cli`` do)."""
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / "saved_model.pb").read_bytes())
    graph = next(g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags)
    sig = graph.signature_def[SIGNATURE]

    def tensors(mapping: Any) -> tuple[SignatureTensor, ...]:
        out = []
        for key in sorted(mapping):  # saved_model_cli lists them sorted too
            info = mapping[key]
            shape = None if info.tensor_shape.unknown_rank else tuple(int(d.size) for d in info.tensor_shape.dim)
            out.append(SignatureTensor(key, types_pb2.DataType.Name(info.dtype), shape, info.name))
        return tuple(out)

    base = str(Path(path).resolve().parent) if version is not None else None
    return ServingInfo(SIGNATURE, sig.method_name, tuple(graph.meta_info_def.tags), tensors(sig.inputs),
                       tensors(sig.outputs), base, version)
