"""Walk a torch module and its Keras rewrite side by side and move every weight across.

Attribute ``a.b`` in torch is attribute ``a.b`` in Keras; ``nn.Sequential``/``nn.ModuleList`` children map by
position to ``keras.Sequential.layers``/lists. Anything left over on either side is an error naming it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from converter.errors import ShapeError
from converter.weights.errors import WeightMappingError, check_all_used
from converter.weights import layers as layer_rules
from rules.keras_names import keras_attribute


@dataclass(frozen=True)
class TransferReport:
    torch_keys: int
    keras_variables: int
    layout: str
    permuted_dense: tuple[str, ...]


class _Sink:
    def __init__(self, layout: str, flatten_inputs: Mapping[str, tuple[int, ...]]) -> None:
        self.layout = layout
        self.flatten_inputs = dict(flatten_inputs)
        self.consumed: set[str] = set()
        self.assigned: set[int] = set()
        self.permuted: list[str] = []

    def put(self, variable: Any, value: np.ndarray, torch_key: str) -> None:
        if variable is None:
            raise WeightMappingError(f"{torch_key}: the Keras layer has no variable for it (use_bias/center/scale?)")
        if tuple(variable.shape) != tuple(value.shape):
            raise ShapeError(
                f"{torch_key}: torch gives shape {tuple(value.shape)} after the layout transform but Keras variable "
                f"{variable.path} has shape {tuple(variable.shape)}"
            )
        variable.assign(value.astype(np.dtype(variable.dtype)))
        self.assigned.add(id(variable))
        self.consumed.add(torch_key)

    def consume(self, torch_key: str) -> None:
        self.consumed.add(torch_key)


def _weighted_sublayers(k: Any) -> list[Any]:
    return [layer for layer in getattr(k, "layers", []) if layer.weights]


def _children_of(k: Any, path: str) -> list[Any]:
    import keras

    if isinstance(k, keras.Sequential):
        return list(k.layers)
    if isinstance(k, (list, tuple)) or type(k).__name__ == "TrackedList":
        return list(k)
    raise WeightMappingError(f"{path or '<root>'}: torch has a Sequential/ModuleList here, Keras has {type(k).__name__}")


def _walk(t: Any, k: Any, path: str, sink: _Sink, rules: list[tuple[type, Any]]) -> None:
    import keras
    import torch.nn as nn

    for cls, fn in rules:
        if isinstance(t, cls):
            target = k
            if isinstance(k, keras.Sequential):  # e.g. ZeroPadding2D + Conv2D standing in for one torch conv
                weighted = _weighted_sublayers(k)
                if len(weighted) != 1:
                    raise WeightMappingError(f"{path.rstrip('.')}: expected one weighted Keras layer, found {len(weighted)}")
                target = weighted[0]
            fn(t, target, path, sink)
            sample = sink.flatten_inputs.get(path.rstrip("."))
            if fn is layer_rules.linear and sample is not None and sink.layout == "channels_last" and any(
                d > 1 for d in sample[1:]
            ):
                sink.permuted.append(path.rstrip("."))
            return
    if isinstance(t, (nn.Sequential, nn.ModuleList)):
        kids = list(t.named_children())
        if not kids and (isinstance(k, keras.layers.Identity) or k == [] or (hasattr(k, "__len__") and len(k) == 0)):
            return
        k_kids = _children_of(k, path)
        if len(k_kids) != len(kids):
            raise WeightMappingError(f"{path.rstrip('.') or '<root>'}: torch has {len(kids)} children, Keras {len(k_kids)}")
        for (name, child), k_child in zip(kids, k_kids):
            _walk(child, k_child, f"{path}{name}.", sink, rules)
        return
    if isinstance(t, nn.ModuleDict):
        for name, child in t.named_children():
            try:
                k_child = k[name]
            except (KeyError, TypeError):
                raise WeightMappingError(f"{path}{name}: no Keras counterpart in the dict attribute") from None
            _walk(child, k_child, f"{path}{name}.", sink, rules)
        return
    # A custom module (or a parameter-free layer): own parameters/buffers as stored, then children by name.
    for name, param in list(t.named_parameters(recurse=False)) + [
        (n, b) for n, b in t.named_buffers(recurse=False) if n not in t._non_persistent_buffers_set
    ]:
        variable = getattr(k, keras_attribute(name), None)
        if variable is None or not hasattr(variable, "assign"):
            raise WeightMappingError(f"{path}{name}: no Keras variable at the same attribute path")
        sink.put(variable, param.detach().cpu().numpy(), f"{path}{name}")
    for name, child in t.named_children():
        k_child = getattr(k, keras_attribute(name), None)
        if k_child is None:
            if not list(child.parameters()) and not list(child.buffers()):
                continue  # a weightless module the rewrite expressed differently (e.g. inlined)
            raise WeightMappingError(f"{path}{name}: torch submodule has no Keras attribute of the same name")
        _walk(child, k_child, f"{path}{name}.", sink, rules)


def transfer_weights(
    torch_module: Any,
    keras_model: Any,
    layout: str = "channels_first",
    flatten_inputs: Mapping[str, tuple[int, ...]] | None = None,
) -> TransferReport:
    """Copy every parameter and buffer of ``torch_module`` into the built ``keras_model``.

    Both directions: called as ``transfer_weights(keras_model, torch_module, flatten_inputs=...)`` (a built Keras
    model first) it copies Keras weights into the torch module the ``--to torch`` rewrite produced.

    ``flatten_inputs`` maps a Linear's path to the (C, *spatial) shape it receives flattened; in channels_last
    mode its rows are permuted to Keras' (*spatial, C) flatten order (see ``converter.weights.trace``).
    """
    if not hasattr(torch_module, "state_dict") and hasattr(keras_model, "state_dict"):
        # Keras -> PyTorch: transfer_weights(keras_model, torch_module) (see converter.weights.to_torch).
        from converter.weights.to_torch import keras_to_torch

        keys, variables, permuted = keras_to_torch(torch_module, keras_model, flatten_inputs)
        return TransferReport(keys, variables, "channels_last->channels_first" if permuted else layout, permuted)
    if layout not in ("channels_first", "channels_last"):
        raise ValueError(f"layout must be channels_first or channels_last, not {layout!r}")
    if not keras_model.built:
        raise ShapeError("the Keras model is not built: call it once on a sample input before transferring weights")
    sink = _Sink(layout, flatten_inputs or {})
    _walk(torch_module, keras_model, "", sink, layer_rules.handlers())
    state_keys = set(torch_module.state_dict().keys())
    check_all_used(sorted(state_keys - sink.consumed), [v.path for v in keras_model.weights if id(v) not in sink.assigned],
                   "torch->keras")
    return TransferReport(len(state_keys), len(keras_model.weights), layout, tuple(sink.permuted))
