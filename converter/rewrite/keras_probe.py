"""--to torch --input-shape: run the user's Keras model once and record each layer's input shape by site key.

Keras layers infer their input sizes; PyTorch code states them (``nn.Linear(in, out)``). One call of the built
model (an explicit opt-in: it runs user code) tells every layer's build shape; the keys are the site keys of
``converter.rewrite.keras_analysis`` so rules find the facts for the call they rewrite.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Sequence

#: a site whose instances saw different shapes (a block class used twice): no single constant fits.
AMBIGUOUS = "ambiguous"


def build_entry(module: Any, name: str, kwargs: dict[str, Any], label: str) -> Any:
    """The model named ``name``: a class or builder function called with ``kwargs``, or a module-level model."""
    from converter.errors import ModelClassError

    obj = getattr(module, name, None)
    if obj is None:
        raise ModelClassError(f"{label}: no class, function or model named {name!r}")
    if not (isinstance(obj, type) or inspect.isfunction(obj)):
        return obj  # a model object built at module level
    try:
        return obj(**kwargs)
    except Exception as err:  # noqa: BLE001 - user code
        raise ModelClassError(f"{label}: {name}(**{kwargs}) failed: {type(err).__name__}: {err}") from None


def sample_inputs(model: Any, shapes: Sequence[tuple[int, ...]]) -> list[Any]:
    """Zeros of the given (Keras, channels-last) shapes: valid indices for Embedding inputs too."""
    import numpy as np

    return [np.zeros(s, dtype=np.float32) for s in shapes]


def _shape_of(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_shape_of(v) for v in value)
    shape = getattr(value, "shape", None)
    return None if shape is None else (None, *tuple(shape)[1:])


def record_call_shapes(model: Any) -> dict[int, Any]:
    """Wrap every layer's ``call`` (instance attribute) to record its first input's shape during one run.

    Build configs only exist for layers with weights to build; pooling/padding layers need the shape too."""
    seen: dict[int, Any] = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        original = layer.call

        def call(*args: Any, __original: Any = original, __id: int = id(layer), **kwargs: Any) -> Any:
            if args and __id not in seen:
                seen[__id] = _shape_of(args[0])
            return __original(*args, **kwargs)

        object.__setattr__(layer, "call", call)
    return seen


def _build_shape(layer: Any, recorded: dict[int, Any]) -> Any:
    if id(layer) in recorded:
        return recorded[id(layer)]
    config = layer.get_build_config() if getattr(layer, "built", False) else None
    if not config:
        return None
    if "input_shape" in config:
        return _plain(config["input_shape"])
    shapes = config.get("shapes_dict") or {}
    return _plain(next(iter(shapes.values()))) if shapes else None


def _plain(shape: Any) -> Any:
    if isinstance(shape, (list, tuple)):
        return tuple(_plain(s) for s in shape)
    return shape


def collect_facts(model: Any, entry: str, recorded: dict[int, Any] | None = None) -> dict[str, Any]:
    """site key -> build input shape for every layer reachable from ``model`` (see keras_analysis for keys)."""
    from converter.weights.to_torch import is_functional

    import keras

    facts: dict[str, Any] = {}
    seen: set[int] = set()

    def add(key: str, layer: Any) -> None:
        found = {key: _build_shape(layer, recorded or {})}
        if isinstance(layer, keras.layers.MultiHeadAttention):  # sizes often given as expressions in the source
            found[key + "#heads"] = (layer.num_heads, layer.key_dim, layer.value_dim)
        activation = getattr(layer, "activation", None)
        if callable(activation) and getattr(activation, "__name__", None):  # ``activation=act`` from a variable
            found[key + "#activation"] = activation.__name__
        for name, value in found.items():
            facts[name] = AMBIGUOUS if name in facts and facts[name] != value else value

    def children(owner: str, layer: Any) -> None:
        if isinstance(layer, keras.Sequential):
            for i, sub in enumerate(layer.layers):
                add(f"{owner}.{i}", sub)
                walk(sub)
        walk(layer)

    def walk(obj: Any) -> None:
        if id(obj) in seen or type(obj).__module__.startswith("keras"):
            return
        seen.add(id(obj))
        cls = type(obj).__name__
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            if isinstance(value, keras.layers.Layer):
                add(f"{cls}.{attr}", value)
                children(f"{cls}.{attr}", value)
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, keras.layers.Layer):
                        add(f"{cls}.{attr}.{i}", item)
                        walk(item)

    if isinstance(model, keras.Sequential):
        children(entry, model)
    elif is_functional(model):
        for layer in model.layers:
            add(f"{entry}.{layer.name}", layer)
            walk(layer)
    else:
        walk(model)
    return {k: v for k, v in facts.items() if v is not None and v != AMBIGUOUS}


def probe(source: Path, entry: str, shapes: Sequence[tuple[int, ...]], kwargs: dict[str, Any],
          seed: int = 0) -> tuple[tuple[str, Any], ...]:
    """Import ``source``, build ``entry`` in a fresh Keras session, call it once, return the facts."""
    from converter.frameworks import quiet_frameworks

    quiet_frameworks()
    from converter.frameworks import tensorflow

    tensorflow()  # imported with fd 2 silenced: TF's C++ registration noise never reaches the user
    import keras

    from converter.errors import ShapeError
    from converter.rewrite.loading import import_file

    keras.backend.clear_session()  # automatic layer names restart, as the rewrite counted them
    keras.utils.set_random_seed(seed)
    model = build_entry(import_file(source), entry, kwargs, str(source))
    recorded = record_call_shapes(model)
    try:
        model(*sample_inputs(model, shapes), training=False)
    except Exception as err:  # noqa: BLE001 - user code
        raise ShapeError(f"the Keras model failed on inputs {list(shapes)}: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}") from None
    return tuple(sorted(collect_facts(model, entry, recorded).items()))
