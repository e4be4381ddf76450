"""Build a native Keras 3 model from an ONNX graph.

Why our own builder: onnx2tf emits a tf_keras (Keras 2) model made of frozen TF ops — Keras 3 cannot load it and
it has no trainable weights (see shared/reference/upstream.md). Here every weighted ONNX op becomes the matching
Keras 3 layer (Conv2D, Dense, BatchNormalization, ...) holding the exported weights as trainable variables, and the
glue becomes ``keras.ops`` calls, so the result is an ordinary functional Keras 3 model that saves to ``.keras``
and reloads with plain ``keras.models.load_model``.

Layout: 4-D image tensors run channels-last (NHWC) inside the model. The builder tracks a permutation per tensor
and only inserts a transpose where an op really needs another order (see ``converter.layout``).
"""
from converter.keras_builder.build import BuildOptions, BuiltModel, build_keras_model

__all__ = ["BuildOptions", "BuiltModel", "build_keras_model"]
