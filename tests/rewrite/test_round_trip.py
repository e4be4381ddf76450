"""Round trip: every PyTorch fixture goes torch -> Keras -> torch through both rewrites and both weight
transfers, and the final torch module reproduces the original's outputs (same seeded inputs, eval mode)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from converter.rewrite import RewriteOptions, rewrite_source

SOURCES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"
SHAPES = {
    "mnist_cnn": "2x1x28x28", "lenet_sequential": "2x1x28x28", "vgg_blocks": "2x3x32x32",
    "resnet_block": "2x3x16x16", "mlp_layernorm": "4x20", "embedding_lstm": "2x12", "gru_seq": "2x10x8",
    "transformer_encoder": "2x6x32", "unet": "1x1x16x16", "modulelist_param": "4x16",
}


def _keras_shape(shape: tuple[int, ...], spatial: bool) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1]) if spatial and len(shape) >= 3 else shape


def round_trip(name: str, tmp: Path) -> float:
    """Max abs difference between the original torch model and its torch -> Keras -> torch copy."""
    import torch

    from converter.parity.compare import Tolerance, compare_arrays
    from converter.rewrite.keras_probe import probe
    from converter.rewrite.loading import build, import_code, import_file
    from converter.rewrite.verify import VerifyOptions, compare_models, format_report
    from converter.input_shapes import unnamed_shapes
    from converter.rewrite.verify_torch import build_keras, compare_keras_torch

    path = SOURCES / f"{name}.py"
    shapes = unnamed_shapes([SHAPES[name]])
    to_keras = rewrite_source(path.read_text(), RewriteOptions(layout="channels_last"), filename=str(path))
    entry = to_keras.top_models[0]
    spatial = entry in to_keras.spatial_classes
    keras_file = tmp / f"{name}_keras.py"
    keras_file.write_text(to_keras.code)
    keras_shapes = tuple(_keras_shape(s, spatial) for s in shapes)
    facts = probe(keras_file, entry, keras_shapes, {})
    to_torch = rewrite_source(to_keras.code, RewriteOptions(to="torch", facts=facts), filename=str(keras_file))
    assert to_torch.todos == (), to_torch.todos

    torch.manual_seed(0)
    original = build(import_file(path), entry, {}, str(path))
    keras_model = build_keras(keras_file, entry, {}, 0)
    there = compare_models(original, keras_model, class_name=entry, layout="channels_last", spatial=spatial,
                           options=VerifyOptions(shapes))
    assert there.passed, format_report(there)
    final = build(import_code(to_torch.code, f"<{name} round trip>", tmp), entry, {}, name)
    back = compare_keras_torch(keras_model, final, name=entry, spatial=spatial, options=VerifyOptions(keras_shapes))
    assert back.passed, format_report(back)
    rng = np.random.default_rng(7)
    vocab = [m.num_embeddings for m in original.modules() if isinstance(m, torch.nn.Embedding)]
    inputs = [torch.from_numpy(rng.integers(0, min(vocab), size=s)) if vocab else
              torch.from_numpy(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    original.eval()
    final.eval()
    with torch.no_grad():
        want, got = original(*inputs), final(*inputs)
    want = want if isinstance(want, (tuple, list)) else (want,)
    got = got if isinstance(got, (tuple, list)) else (got,)
    worst = 0.0
    for w, g in zip(want, got):
        row = compare_arrays("round trip", g.numpy(), w.numpy(), Tolerance(1e-4, 1e-4))
        assert row.passed, row
        worst = max(worst, row.max_abs_error)
    return worst


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_torch_keras_torch_round_trip(name: str, tmp_path: Path) -> None:
    assert round_trip(name, tmp_path) < 1e-4
