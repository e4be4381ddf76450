"""How a Keras model takes its inputs and gives its outputs: one tensor, a list, or a dict keyed by input name
(keras-hub backbones take ``{"token_ids": ..., "padding_mask": ...}`` and refuse a list). Every place that calls a
Keras model with crossport's flat feeds (the conversion source, the parity runner, the tf2onnx trace, the
torch-backend export) packs them here, so a dict-input model is called by name everywhere."""
from __future__ import annotations

from typing import Any, Sequence


def input_names(model: Any) -> tuple[str, ...]:
    """The model's inputs in the order crossport feeds them (``model.inputs``, i.e. Keras' flattened order)."""
    return tuple(_name(t) for t in (getattr(model, "inputs", None) or ()))


def _structure(model: Any) -> Any:
    """The input structure the model was built with (a tensor, a list or a dict), or None (subclassed/unbuilt)."""
    try:
        return model.input  # raises for a model without recorded inputs
    except Exception:  # noqa: BLE001 - subclassed / unbuilt models
        return None


def takes_dict(model: Any) -> bool:
    """Whether the model was built on a dict of inputs (functional ``keras.Model(inputs={...})``)."""
    return isinstance(_structure(model), dict)


def pack(model: Any, feeds: Sequence[Any]) -> Any:
    """What to call ``model`` with, in the structure it was built on: a dict by input name, a list (also of one:
    ``keras.Model([x], y)`` warns about a bare tensor), else the tensor alone for a one-input model (a subclassed
    model's call() gets exactly what it was written for) or a list."""
    struct = _structure(model)
    if isinstance(struct, dict):
        keys = _dict_keys(model)
        if len(keys) == len(feeds):
            return dict(zip(keys, feeds))
    if isinstance(struct, (list, tuple)) and len(struct) == len(feeds):
        return list(feeds)
    return feeds[0] if len(feeds) == 1 else list(feeds)


def flatten(out: Any) -> list[Any]:
    """A model's outputs as a flat list (dict outputs in Keras' flattened order, i.e. sorted keys)."""
    if isinstance(out, (list, tuple, dict)):
        import keras

        return list(keras.tree.flatten(out))
    return [out]


def output_names(model: Any, count: int) -> tuple[str, ...]:
    """Names of the flattened outputs: the dict keys of a dict-output model, else ``model.output_names``."""
    try:
        struct = model.output
    except Exception:  # noqa: BLE001 - subclassed / unbuilt models
        struct = None
    if isinstance(struct, dict) and len(struct) == count:
        return tuple(sorted(struct))
    names = tuple(getattr(model, "output_names", None) or ())
    return names if len(names) == count else tuple(f"output_{k}" for k in range(count))


def integer_bounds(model: Any) -> dict[str, tuple[int, int]]:
    """Integer inputs whose valid values the model itself fixes: an input fed into an ``Embedding`` (directly or
    through nested functional models, as keras-hub backbones are nested in task models) is drawn from
    ``[0, input_dim)``; an integer input named like a mask from ``{0, 1}``. Token ids drawn out of the vocabulary
    would make TF raise (or return zeros) where PyTorch raises."""
    by_id = _embedding_bounds(model)
    bounds: dict[str, tuple[int, int]] = {}
    for t in getattr(model, "inputs", None) or ():
        name = _name(t)
        if id(t) in by_id:
            bounds[name] = by_id[id(t)]
        elif "mask" in name.lower() and "int" in str(t.dtype):
            bounds[name] = (0, 2)
    return bounds


def _embedding_bounds(model: Any, depth: int = 0) -> dict[int, tuple[int, int]]:
    """``id(input tensor) -> [0, rows)`` for the model's inputs that reach an ``Embedding`` unchanged."""
    import keras

    own = {id(t) for t in (getattr(model, "inputs", None) or ())}
    found: dict[int, tuple[int, int]] = {}

    def note(tid: int, rows: int) -> None:
        lo, hi = found.get(tid, (0, rows))
        found[tid] = (lo, min(hi, rows))

    for layer in getattr(model, "layers", ()) or ():
        nodes = getattr(layer, "_inbound_nodes", ()) or ()
        if isinstance(layer, keras.layers.Embedding):
            for node in nodes:
                for tensor in getattr(node, "input_tensors", ()):
                    if id(tensor) in own:
                        note(id(tensor), int(layer.input_dim))
        elif depth < 4 and getattr(layer, "inputs", None):  # a nested functional model: map its inputs back
            inner = _embedding_bounds(layer, depth + 1)
            inner_inputs = list(layer.inputs)
            for node in nodes:
                given = list(getattr(node, "input_tensors", ()))
                if len(given) != len(inner_inputs):
                    continue
                for outer, own_input in zip(given, inner_inputs):
                    if id(outer) in own and id(own_input) in inner:
                        note(id(outer), inner[id(own_input)][1])
    return found


def _dict_keys(model: Any) -> list[str]:
    """The dict keys in the order of ``model.inputs`` (Keras flattens a dict by sorted key)."""
    struct = model.input
    by_id = {id(v): k for k, v in struct.items()}
    keys = [by_id.get(id(t)) for t in model.inputs]
    return keys if None not in keys else sorted(struct)


def _name(tensor: Any) -> str:
    return str(getattr(tensor, "name", "input")).split(":")[0]


