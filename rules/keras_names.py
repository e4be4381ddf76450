"""Names Keras owns: the base classes of a Keras model, and attribute names a torch model may use freely but a
Keras Model/Layer owns (read-only properties or state Keras relies on). The rewrite renames ``self.<name>`` to
``self.<name>_``; the weight transfer (``converter.weights``) follows the same rule."""
from __future__ import annotations

#: The classes a Keras model or block derives from (qualified, canonical spelling).
MODEL_BASES = frozenset({"keras.Model", "keras.layers.Layer"})

KERAS_RESERVED = frozenset({
    "layers", "weights", "variables", "trainable_weights", "non_trainable_weights", "trainable_variables",
    "non_trainable_variables", "input", "output", "inputs", "outputs", "dtype", "compute_dtype", "variable_dtype",
    "input_dtype", "losses", "metrics", "metrics_names", "metrics_variables", "compiled_metrics", "path", "name",
    "trainable", "built", "optimizer", "loss", "compiled", "distribute_strategy", "quantization_mode",
    "supports_masking", "dtype_policy",
})


def keras_attribute(name: str) -> str:
    """The attribute name the rewrite gives a torch attribute ``name``."""
    return f"{name}_" if name in KERAS_RESERVED else name
