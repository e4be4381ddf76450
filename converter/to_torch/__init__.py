"""The PyTorch runtime side of a conversion to PyTorch: crossport's plain-torch modules, saving/reloading
artifacts, trainable-parameter assignment and ``--emit-source``. The route itself is
``converter.conversion.routes.onnx_torch``."""
