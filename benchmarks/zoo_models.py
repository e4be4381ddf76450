"""The benchmark zoo: which models, how they are built, and how their weights are re-drawn (no downloads).

Every builder returns a model with *random* weights, then ``calibrate_*`` makes the numbers worth comparing:
freshly initialised classifiers often produce outputs of order 1e-10 (Keras heads) or keep BatchNorm at its
identity statistics and LayerScale at 1e-6, so a dropped layer or a wrong epsilon would still "verify". We

1. re-draw BatchNorm affine terms, biases and LayerScale factors away from their defaults;
2. set every BatchNorm's running statistics to the real statistics of a seeded calibration batch (one forward
   pass in training mode for the BN layers only, momentum chosen so the running values *are* the batch values),
   so every normalised activation is of order one in eval mode too;
3. rescale the final Dense/Linear (kernel and bias) so the model's output has unit standard deviation.

The calibration batch is drawn like crossport's own verification inputs (standard normal floats; integer token
ids in [0, 10)), so the verified outputs are of order one as well. Heavy imports stay inside functions: this module
is imported by the parent benchmark process, which never loads torch or TensorFlow itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

SEED = 0
CALIBRATION_BATCH = 8
TOKEN_RANGE = (0, 10)  # crossport's default integer input range (converter.parity.inputs.InputSpec.int_range)


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: a name, its direction, the builder and the input it takes (batch excluded)."""

    name: str
    direction: str  # "torch2tf" (PyTorch source) or "keras2torch" (Keras source)
    origin: str  # where the architecture comes from, for the README
    input_shape: tuple[int, ...]
    input_dtype: str = "float32"
    footprint_only: bool = False  # tiny model used to measure the frameworks' own memory footprint
    output_scale: float = 1.0  # the calibrated output's std (a regression net in physical units: 1e4)
    input_names: tuple[str, ...] = ()  # a dict-input model: one input of input_shape/input_dtype per name


TORCH_MODELS: tuple[ZooModel, ...] = (
    ZooModel("resnet18", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("mobilenet_v3_small", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("efficientnet_b0", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("squeezenet1_1", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("densenet121", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("convnext_tiny", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("vit_b_16", "torch2tf", "torchvision", (3, 224, 224)),
    ZooModel("lstm_text", "torch2tf", "benchmarks/zoo_models.py", (32,), "int64"),
    ZooModel("transformer_encoder", "torch2tf", "benchmarks/zoo_models.py", (32, 128)),
    # Families of issue 18 (Hugging Face with default sdpa attention; GroupNorm; strided dilated conv; ceil-mode
    # pooling; outputs ~1e4). The transformers ones need the package (built from configs, nothing downloaded).
    ZooModel("tiny_bert", "torch2tf", "transformers BertModel (config)", (32,), "int64"),
    ZooModel("tiny_gpt2", "torch2tf", "transformers GPT2Model (config), causal mask", (32,), "int64"),
    ZooModel("groupnorm_cnn", "torch2tf", "benchmarks/zoo_models.py", (3, 64, 64)),
    ZooModel("dilated_strided_conv", "torch2tf", "benchmarks/zoo_models.py", (3, 64, 64)),
    ZooModel("ceil_pool_net", "torch2tf", "benchmarks/zoo_models.py", (3, 65, 65)),
    ZooModel("large_output_regression", "torch2tf", "benchmarks/zoo_models.py", (3, 64, 64), output_scale=1e4),
)
KERAS_MODELS: tuple[ZooModel, ...] = (
    ZooModel("MobileNetV2", "keras2torch", "keras.applications", (224, 224, 3)),
    ZooModel("ResNet50", "keras2torch", "keras.applications", (224, 224, 3)),
    ZooModel("EfficientNetB0", "keras2torch", "keras.applications", (224, 224, 3)),
    ZooModel("DenseNet121", "keras2torch", "keras.applications", (224, 224, 3)),
    ZooModel("ConvNeXtTiny", "keras2torch", "keras.applications", (224, 224, 3)),
    ZooModel("NASNetMobile", "keras2torch", "keras.applications", (224, 224, 3)),
    ZooModel("keras_lstm", "keras2torch", "benchmarks/zoo_models.py", (32,), "int32"),
    ZooModel("keras_transformer", "keras2torch", "benchmarks/zoo_models.py", (32, 128)),
    ZooModel("keras_hub_bert", "keras2torch", "keras-hub BertBackbone (config), dict inputs", (32,), "int32",
             input_names=("padding_mask", "segment_ids", "token_ids")),
)
FOOTPRINT_MODELS: tuple[ZooModel, ...] = (
    ZooModel("tiny_torch_cnn", "torch2tf", "fixtures.models:small_cnn", (3, 16, 16), footprint_only=True),
    ZooModel("tiny_keras_cnn", "keras2torch", "fixtures.keras_models:cnn", (16, 16, 3), footprint_only=True),
)
ZOO: tuple[ZooModel, ...] = TORCH_MODELS + KERAS_MODELS
ALL_MODELS: dict[str, ZooModel] = {m.name: m for m in ZOO + FOOTPRINT_MODELS}


# ----------------------------------------------------------------------------------------------- PyTorch side


def _torch_lstm_text() -> Any:
    import torch.nn as nn

    class LSTMText(nn.Module):
        """Text classifier: Embedding -> 2-layer LSTM (batch_first) -> last time step -> Linear."""

        def __init__(self, vocab: int = 1000, embed: int = 64, hidden: int = 128, classes: int = 10) -> None:
            super().__init__()
            self.embedding = nn.Embedding(vocab, embed)
            self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
            self.fc = nn.Linear(hidden, classes)

        def forward(self, tokens: Any) -> Any:
            output, _ = self.lstm(self.embedding(tokens))
            return self.fc(output[:, -1, :])

    return LSTMText()


def _torch_transformer_encoder() -> Any:
    import torch.nn as nn
    import torch.nn.functional as F

    class EncoderLayer(nn.Module):
        """Pre-norm encoder layer (MultiheadAttention + GELU feed-forward), written out so no fused fast path
        hides behind nn.TransformerEncoderLayer."""

        def __init__(self, d_model: int, heads: int, ff: int) -> None:
            super().__init__()
            self.norm1 = nn.LayerNorm(d_model)
            self.attn = nn.MultiheadAttention(d_model, heads, batch_first=True)
            self.norm2 = nn.LayerNorm(d_model)
            self.linear1 = nn.Linear(d_model, ff)
            self.linear2 = nn.Linear(ff, d_model)

        def forward(self, x: Any) -> Any:
            h = self.norm1(x)
            a, _ = self.attn(h, h, h, need_weights=False)
            x = x + a
            return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))

    class TransformerEncoder(nn.Module):
        """Two encoder layers over a (batch, 32, 128) sequence, mean-pooled into a 10-way head."""

        def __init__(self, d_model: int = 128, heads: int = 4, ff: int = 256, layers: int = 2,
                     classes: int = 10) -> None:
            super().__init__()
            self.blocks = nn.ModuleList([EncoderLayer(d_model, heads, ff) for _ in range(layers)])
            self.norm = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, classes)

        def forward(self, x: Any) -> Any:
            for block in self.blocks:
                x = block(x)
            return self.head(self.norm(x).mean(dim=1))

    return TransformerEncoder()


def _hf_text(kind: str) -> Callable[[], Any]:
    """A tiny BERT (padding mask from token id 0, [CLS] head) or GPT-2 (causal, last-token head) from a config."""

    def build() -> Any:
        import torch.nn as nn
        import transformers as T

        if kind == "bert":
            body = T.BertModel(T.BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2,
                                            num_attention_heads=4, intermediate_size=128,
                                            max_position_embeddings=64), add_pooling_layer=False)
        else:
            body = T.GPT2Model(T.GPT2Config(vocab_size=1000, n_embd=64, n_layer=2, n_head=4, n_positions=64,
                                            bos_token_id=0, eos_token_id=0))

        class TextClassifier(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body = body
                self.head = nn.Linear(64, 10)

            def forward(self, tokens: Any) -> Any:
                if kind == "bert":
                    hidden = self.body(input_ids=tokens, attention_mask=(tokens != 0).long()).last_hidden_state
                    return self.head(hidden[:, 0])
                return self.head(self.body(input_ids=tokens).last_hidden_state[:, -1])

        return TextClassifier()

    return build


def _small_cnn(kind: str) -> Callable[[], Any]:
    """Small CNNs, one per family the builder had to learn: GroupNorm; a strided dilated conv (timm skresnet);
    ceil-mode max pooling with partial windows (torchvision googlenet); a regression head (outputs ~1e4)."""

    def build() -> Any:
        import torch.nn as nn

        if kind == "groupnorm":
            body = [nn.Conv2d(3, 32, 3, padding=1), nn.GroupNorm(4, 32), nn.ReLU(),
                    nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.GroupNorm(1, 32), nn.GELU(),
                    nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.GroupNorm(64, 64), nn.ReLU()]
        elif kind == "dilated":
            body = [nn.Conv2d(3, 32, 3, stride=2, padding=2, dilation=2), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.Conv2d(32, 32, 3, stride=2, padding=2, dilation=2, groups=32), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.Conv2d(32, 64, 3, stride=2, padding=4, dilation=4), nn.BatchNorm2d(64), nn.ReLU()]
        elif kind == "ceil":
            body = [nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.MaxPool2d(3, 2, ceil_mode=True), nn.MaxPool2d(3, 1, padding=1, ceil_mode=True),
                    nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                    nn.MaxPool2d(2, 2, ceil_mode=True)]
        else:
            body = [nn.Conv2d(3, 32, 3, stride=2, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                    nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU()]
        return nn.Sequential(*body, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    return build


def _torchvision(name: str) -> Callable[[], Any]:
    def build() -> Any:
        import torchvision

        return getattr(torchvision.models, name)(weights=None)

    return build


def _tiny_torch_cnn() -> Any:
    from fixtures.models import small_cnn

    return small_cnn()


TORCH_BUILDERS: dict[str, Callable[[], Any]] = {
    **{m.name: _torchvision(m.name) for m in TORCH_MODELS if m.origin == "torchvision"},
    "lstm_text": _torch_lstm_text, "transformer_encoder": _torch_transformer_encoder,
    "tiny_torch_cnn": _tiny_torch_cnn,
    "tiny_bert": _hf_text("bert"), "tiny_gpt2": _hf_text("gpt2"),
    "groupnorm_cnn": _small_cnn("groupnorm"), "dilated_strided_conv": _small_cnn("dilated"),
    "ceil_pool_net": _small_cnn("ceil"), "large_output_regression": _small_cnn("regression"),
}


def torch_input(model: ZooModel, batch: int, seed: int) -> Any:
    """A seeded batch drawn the way crossport's verifier draws its first input set."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    shape = (batch, *model.input_shape)
    if model.input_names:  # masks and segment ids in {0, 1} (crossport's default for them too), ids as below
        return {n: (rng.integers(0, 2, size=shape) if "mask" in n or "segment" in n
                    else rng.integers(*TOKEN_RANGE, size=shape)).astype(model.input_dtype)
                for n in model.input_names}
    if model.input_dtype.startswith("int"):
        return torch.from_numpy(rng.integers(*TOKEN_RANGE, size=shape).astype(model.input_dtype))
    return torch.from_numpy(rng.standard_normal(shape).astype(np.float32))


def _torch_head(module: Any) -> Any:
    """The last Linear/Conv2d registered: the classifier of every torchvision model and of ours."""
    import torch.nn as nn

    heads = [m for m in module.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    return heads[-1]


def calibrate_torch(module: Any, model: ZooModel, seed: int = SEED) -> dict[str, float]:
    """Re-draw BN affine terms, biases and LayerScale; set BN running stats from a calibration batch; scale the
    head to unit output std. Returns the output statistics before and after (for the results file)."""
    import torch
    import torch.nn as nn

    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 and not bool(p.any()):  # zero-initialised (ViT's head, class token): input-blind
                p.copy_(torch.randn(p.shape, generator=gen) / (p[0].numel() ** 0.5))
            elif "layer_scale" in name:
                p.copy_(torch.rand(p.shape, generator=gen) * 0.2 + 0.1)
            elif name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
        for bn in bns:
            if bn.affine:
                bn.weight.copy_(torch.rand(bn.weight.shape, generator=gen) + 0.5)
    x = torch_input(model, CALIBRATION_BATCH, seed + 1000)
    module.eval()
    for bn in bns:  # running stats := exact statistics of the calibration batch
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        module(x)
    module.eval()
    for bn in bns:
        bn.momentum = 0.1
    with torch.no_grad():
        before = float(module(x).std())
        head = _torch_head(module)
        scale = 1.0 / max(before, 1e-30)
        head.weight.mul_(scale)
        if head.bias is not None:
            head.bias.mul_(scale)
        after = float(module(x).std())
    return {"output_std_before": before, "output_std_after": after}


def build_torch(model: ZooModel, seed: int = SEED) -> tuple[Any, dict[str, float]]:
    import torch

    torch.manual_seed(seed)
    module = TORCH_BUILDERS[model.name]().eval()
    stats = calibrate_torch(module, model, seed) if not model.footprint_only else {}
    if model.output_scale != 1.0:
        import torch

        head = _torch_head(module)
        with torch.no_grad():
            head.weight.mul_(model.output_scale)
            if head.bias is not None:
                head.bias.mul_(model.output_scale)
        stats["output_scale"] = model.output_scale
    return module, stats


def save_torch(model: ZooModel, path: Path, seed: int = SEED) -> dict[str, Any]:
    """Save as an ExportedProgram ``.pt2``, dynamic batch (traced with batch 2, since torch.export specializes a
    size-1 dimension); a model that does not export with a dynamic batch is saved with batch 1 and says so."""
    import torch

    module, stats = build_torch(model, seed)
    example = (torch_input(model, 2, seed),)
    try:
        program = torch.export.export(module, example,
                                      dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
        dynamic = True
    except Exception:  # noqa: BLE001 - any export failure: fall back to a static batch and record it
        program = torch.export.export(module, (torch_input(model, 1, seed),))
        dynamic = False
    torch.export.save(program, str(path))
    weights = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])
    params = sum(p.numel() for p in module.parameters())
    return {**stats, "dynamic_batch": dynamic, "weights_bytes": int(weights), "parameters": int(params)}


# ------------------------------------------------------------------------------------------------- Keras side


def _keras() -> Any:
    from converter.frameworks import keras

    return keras()


def _keras_app(name: str) -> Callable[[], Any]:
    def build() -> Any:
        keras = _keras()
        return getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3),
                                                 classifier_activation=None)

    return build


def _keras_lstm() -> Any:
    keras = _keras()
    inp = keras.Input((32,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(1000, 64)(inp)
    x = keras.layers.LSTM(128, return_sequences=True)(x)
    x = keras.layers.LSTM(128)(x)
    out = keras.layers.Dense(10)(x)
    return keras.Model(inp, out, name="keras_lstm")


def _keras_transformer() -> Any:
    """One transformer encoder block (pre-norm, MultiHeadAttention + GELU feed-forward) and a pooled head."""
    keras = _keras()
    inp = keras.Input((32, 128), name="sequence")
    h = keras.layers.LayerNormalization(epsilon=1e-5)(inp)
    a = keras.layers.MultiHeadAttention(num_heads=4, key_dim=32)(h, h)
    x = keras.layers.Add()([inp, a])
    f = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    f = keras.layers.Dense(256, activation="gelu")(f)
    f = keras.layers.Dense(128)(f)
    x = keras.layers.Add()([x, f])
    x = keras.layers.GlobalAveragePooling1D()(x)
    out = keras.layers.Dense(10)(x)
    return keras.Model(inp, out, name="keras_transformer")


def _tiny_keras_cnn() -> Any:
    from fixtures.keras_models import cnn

    return cnn()


def _keras_hub_bert() -> Any:
    """keras-hub's BertBackbone built from a small config (nothing downloaded), called on a dict of fixed-length
    integer inputs as keras-hub's own task models do; its sequence output, so the head rescale applies."""
    import keras_hub

    keras = _keras()
    backbone = keras_hub.models.BertBackbone(vocabulary_size=1000, num_layers=2, num_heads=4, hidden_dim=64,
                                             intermediate_dim=128, max_sequence_length=32, num_segments=2)
    inputs = {n: keras.Input((32,), dtype="int32", name=n) for n in ("token_ids", "segment_ids", "padding_mask")}
    out = keras.layers.Dense(64, name="head")(backbone(inputs)["sequence_output"])
    return keras.Model(inputs, out, name="keras_hub_bert")


KERAS_BUILDERS: dict[str, Callable[[], Any]] = {
    **{m.name: _keras_app(m.name) for m in KERAS_MODELS if m.origin == "keras.applications"},
    "keras_lstm": _keras_lstm, "keras_transformer": _keras_transformer, "tiny_keras_cnn": _tiny_keras_cnn,
    "keras_hub_bert": _keras_hub_bert,
}


def keras_input(model: ZooModel, batch: int, seed: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    shape = (batch, *model.input_shape)
    if model.input_names:  # masks and segment ids in {0, 1} (crossport's default for them too), ids as below
        return {n: (rng.integers(0, 2, size=shape) if "mask" in n or "segment" in n
                    else rng.integers(*TOKEN_RANGE, size=shape)).astype(model.input_dtype)
                for n in model.input_names}
    if model.input_dtype.startswith("int"):
        return rng.integers(*TOKEN_RANGE, size=shape).astype(model.input_dtype)
    return rng.standard_normal(shape).astype(np.float32)


def _keras_layers(model: Any) -> list[Any]:
    """Every layer, nested models flattened (keras.applications are flat, but be safe)."""
    out = []
    for layer in model.layers:
        out.extend(_keras_layers(layer) if hasattr(layer, "layers") and layer is not model else [layer])
    return out


def _redraw_keras_layer(layer: Any, rng: Any) -> None:
    """Normalisation affine terms and biases away from 1/0; LayerScale factors from 1e-6 up to 0.1-0.3."""
    import numpy as np

    def draw(w: Any, values: Any) -> None:
        w.assign(values.astype(np.float32))

    for w in layer.weights:
        name, shape = w.path.rsplit("/", 1)[-1], tuple(w.shape)
        if "int" in str(w.dtype) or name in ("moving_mean", "moving_variance"):
            continue
        if type(layer).__name__ == "LayerScale":
            draw(w, rng.random(shape) * 0.2 + 0.1)
        elif name == "gamma":
            draw(w, rng.random(shape) + 0.5)
        elif name in ("beta", "bias"):
            draw(w, rng.standard_normal(shape) * 0.1)


def calibrate_keras(model: Any, zoo: ZooModel, seed: int = SEED) -> dict[str, float]:
    """The Keras counterpart of ``calibrate_torch``: BN statistics from one training-mode pass with momentum 0
    (moving value := batch value) and Dropout off, then the head scaled to unit output std."""
    import numpy as np

    keras = _keras()
    rng = np.random.default_rng(seed)
    layers = _keras_layers(model)
    for layer in layers:
        _redraw_keras_layer(layer, rng)
    bns = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    saved = [(bn, bn.momentum) for bn in bns] + [(d, d.rate) for d in drops]
    for bn in bns:
        bn.momentum = 0.0
    for d in drops:
        d.rate = 0.0
    x = keras_input(zoo, CALIBRATION_BATCH, seed + 1000)
    model(x, training=True)
    for layer, value in saved:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = value
        else:
            layer.rate = value
    before = float(np.std(np.asarray(model(x, training=False))))
    head = next(layer for layer in reversed(layers) if isinstance(layer, keras.layers.Dense))
    scale = 1.0 / max(before, 1e-30)
    head.kernel.assign(np.asarray(head.kernel) * scale)
    if head.bias is not None:
        head.bias.assign(np.asarray(head.bias) * scale)
    after = float(np.std(np.asarray(model(x, training=False))))
    return {"output_std_before": before, "output_std_after": after}


def build_keras(zoo: ZooModel, seed: int = SEED) -> tuple[Any, dict[str, float]]:
    _keras().utils.set_random_seed(seed)
    model = KERAS_BUILDERS[zoo.name]()
    stats = calibrate_keras(model, zoo, seed) if not zoo.footprint_only else {}
    return model, stats


def save_keras(zoo: ZooModel, path: Path, seed: int = SEED) -> dict[str, Any]:
    import numpy as np

    model, stats = build_keras(zoo, seed)
    model.save(str(path))
    weights = sum(int(np.prod(w.shape)) * np.dtype(str(w.dtype)).itemsize for w in model.weights)
    params = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return {**stats, "dynamic_batch": True, "weights_bytes": int(weights), "parameters": int(params)}


def save_source(zoo: ZooModel, work: Path, seed: int = SEED) -> tuple[Path, dict[str, Any]]:
    """Write the source model file for ``zoo`` into ``work``; return its path and facts about it."""
    if zoo.direction == "torch2tf":
        path = work / f"{zoo.name}.pt2"
        return path, save_torch(zoo, path, seed)
    path = work / f"{zoo.name}.keras"
    return path, save_keras(zoo, path, seed)
