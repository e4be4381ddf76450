"""Which PyTorch route ``--route auto`` tries first for a Keras file, read from its config without loading it.

Two routes reach PyTorch:

- ``onnx``: Keras / SavedModel / ONNX -> ONNX (tf2onnx) -> onnxsim -> onnx2torch -> ``.pt2`` / TorchScript /
  ``--emit-source``. Works for every source format.
- ``keras-native``: a Keras 3 file reloaded under Keras' torch backend and ``torch.export``-ed
  (``converter.adapters.keras_torch_backend``). Keras sources only, ``.pt2`` only; no ONNX in between, the Keras
  layer code itself is traced, so numerics follow Keras' own torch implementation.

``--route auto`` picks the order per model, from the Keras config alone (``keras_kind``: the ``.keras`` zip's
``config.json`` or the ``.h5`` ``model_config`` attribute, read without loading the model):

- ``AUTO_ORDER`` (onnx first) for models whose layer list can be read and holds no recurrent layer. Measured
  (keras.applications, weights=None, batch 1, 224x224, one thread, median of 10): the keras-native ``.pt2`` keeps
  Keras' NHWC with a permute around every conv, permutes the HWIO kernels on every call and runs BatchNorm as three
  elementwise ops -- MobileNetV2 156 permutes and 3.3x the Keras-on-TF latency, ResNet50 2.8x, DenseNet121 2.3x,
  NASNetMobile 1188 permutes and 4.7x. The onnx route gives native NCHW modules (``nn.Conv2d`` with OIHW weights,
  native ``batch_norm``, one permute at the NHWC input): ResNet50 1.48x (torchvision's own resnet50 is in the same
  range), MobileNetV2 1.10x. Both routes verify on every fixture with max errors within a factor 2 of each other
  (all <= 6.7e-6), so numbers do not separate them; speed and the graph a PyTorch user reads do.
- ``AUTO_ORDER`` too when the only recurrent layers are plain forward LSTMs (``FUSED_LSTM``): tf2onnx exports each as
  one ONNX LSTM op, which becomes an ``nn.LSTM`` (PyTorch's fused kernel, weights shared across steps); the zoo's
  keras_lstm ran x2.7 slower than Keras through keras-native.
- ``RECURRENT_ORDER`` (keras-native first) when the config has another recurrent layer (LSTM, GRU, SimpleRNN, RNN and their
  cells, Bidirectional, ConvLSTM*, anything wrapping them): every Keras variable stays one ``nn.Parameter``, so
  recurrent weights shared across time steps stay shared and sequence lengths stay free, where the onnx route unrolls
  a GRU with a copy of the recurrent kernels per step (only one of them trainable). Also when the layer list cannot
  be read (a subclassed model whose config does not list its layers; an unreadable config): the recurrent check
  cannot be made, and keras-native traces the model's own ``call``.

Whichever goes first, the other stays the fallback (a route that is rejected or fails verification moves on). The
ONNX route is the only route for SavedModel/ONNX sources, TorchScript and ``--emit-source``.
"""
from __future__ import annotations

import json
import zipfile
from typing import Any

# Keras class names whose presence anywhere in the config (layer, wrapped layer, RNN cell) makes a model recurrent.
RECURRENT_CLASSES = frozenset({
    "LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", "LSTMCell",
    "GRUCell", "SimpleRNNCell", "StackedRNNCells", "CuDNNLSTM", "CuDNNGRU", "LSTMV1", "GRUV1",
})
PLAIN, RECURRENT, OPAQUE = "plain", "recurrent", "opaque"  # keras_kind results
FUSED_LSTM = "lstm"  # recurrent, but only LSTMs that tf2onnx exports as ONNX LSTM ops: onnx first
# an LSTM config entry tf2onnx's LSTM rewriter turns into one ONNX LSTM op (measured: a backwards LSTM or a GRU
# is unrolled into per-step MatMuls instead)
_FUSABLE_LSTM = {"go_backwards": False, "unroll": False, "stateful": False, "activation": "tanh",
                 "recurrent_activation": "sigmoid"}


def _keras_config(source: str) -> Any:
    """The model config of a ``.keras`` zip (``config.json``) or a Keras ``.h5`` file (``model_config``)."""
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as zf:
            return json.loads(zf.read("config.json"))
    import h5py

    with h5py.File(source, "r") as f:
        raw = f.attrs["model_config"]
    return json.loads(raw.decode() if isinstance(raw, bytes) else raw)


def _layer_list(config: Any) -> list | None:
    """The layers a Functional/Sequential config lists (Keras 2 Sequential: the config itself is the list)."""
    inner = config.get("config") if isinstance(config, dict) else None
    if isinstance(inner, list):
        return inner
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return layers if isinstance(layers, list) else None


def _class_names(node: Any) -> set[str]:
    """Every ``class_name`` in a config tree: layers, nested models, wrapped layers, RNN cells."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            name = item.get("class_name")
            if isinstance(name, str):
                found.add(name)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def keras_kind(source: str) -> tuple[str, str]:
    """``(PLAIN | RECURRENT | OPAQUE, why)`` for a Keras file, from its config alone (no model is loaded).

    OPAQUE: the config cannot be read, or does not list the model's layers (a subclassed model), or lists a nested
    model that does not list its own."""
    try:
        config = _keras_config(source)
    except Exception as err:  # noqa: BLE001 - loading the model reports what is wrong with the file
        return OPAQUE, f"its Keras config could not be read ({type(err).__name__})"
    layers = _layer_list(config)
    if layers is None:
        name = config.get("class_name", "?") if isinstance(config, dict) else "?"
        return OPAQUE, f"its Keras config ({name}) does not list its layers"
    recurrent = sorted(_class_names(layers) & RECURRENT_CLASSES)
    if recurrent == ["LSTM"] and "TimeDistributed" not in _class_names(layers) and _plain_lstms(layers):
        return FUSED_LSTM, "only plain LSTM layers in the Keras config (ONNX LSTM ops, nn.LSTM in PyTorch)"
    if recurrent:
        return RECURRENT, f"recurrent layers in the Keras config: {', '.join(recurrent)}"
    hidden = _opaque_nested(layers)
    if hidden:
        return OPAQUE, f"nested model {hidden!r} does not list its layers in the Keras config"
    return PLAIN, "no recurrent layers in the Keras config"


def _plain_lstms(node: Any) -> bool:
    """Every LSTM in the config tree has the settings of ``_FUSABLE_LSTM``."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("class_name") == "LSTM":
                config = item.get("config") or {}
                if any(config.get(k, v) != v for k, v in _FUSABLE_LSTM.items()):
                    return False
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _opaque_nested(layers: list) -> str:
    """The name of a nested model (at any depth) whose config does not list its layers, else empty."""
    for layer in layers:
        if not isinstance(layer, dict):
            continue
        module, name = str(layer.get("module") or ""), layer.get("class_name")
        if module.startswith("keras") and "models" in module or name in ("Functional", "Sequential", "Model"):
            inner = _layer_list(layer)
            if inner is None:
                return str(layer.get("name") or name)
            found = _opaque_nested(inner)
            if found:
                return found
    return ""
