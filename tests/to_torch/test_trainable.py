"""``converter.to_torch.trainable``: which tensors of a converted module become trainable parameters."""
from __future__ import annotations

import numpy as np
import torch

from converter.to_torch.trainable import _key, assign_trainable


def test_the_key_is_the_multiset_of_values() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 3, 8, 16), dtype=np.float32)
    assert _key(w) == _key(np.transpose(w, (3, 2, 0, 1)).copy())  # a Keras kernel as a PyTorch conv weight
    assert _key(w) == _key(w.reshape(-1)[::-1])
    assert _key(w) == _key(w.astype(np.float64))  # compared as float32, as the weights are
    nudged = w.copy()
    nudged[1, 2, 3, 4] = np.nextafter(nudged[1, 2, 3, 4], np.float32(np.inf))
    assert _key(nudged) != _key(w)
    assert _key(w[..., :8]) != _key(w[..., 8:])
    big = rng.standard_normal(3 * (1 << 22) + 5, dtype=np.float32)  # more than one block
    assert _key(big) == _key(rng.permutation(big))


class _Converted(torch.nn.Module):
    def __init__(self, kernel: np.ndarray, bias: np.ndarray, folded: np.ndarray, gates: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("conv_weight", torch.from_numpy(np.transpose(kernel, (3, 2, 0, 1)).copy()))
        self.register_buffer("conv_bias", torch.from_numpy(bias.copy()))
        self.register_buffer("scaled", torch.from_numpy(folded))  # not a copy of any source weight
        self.register_buffer("gate_a", torch.from_numpy(gates[:4].copy()))  # pieces of one source weight
        self.register_buffer("gate_b", torch.from_numpy(gates[4:].copy()))


def test_copies_and_pieces_of_source_weights_train_the_rest_stays_frozen() -> None:
    rng = np.random.default_rng(1)
    kernel = rng.standard_normal((3, 3, 4, 6), dtype=np.float32)
    bias, gates = rng.standard_normal(6, dtype=np.float32), rng.standard_normal(8, dtype=np.float32)
    module = _Converted(kernel, bias, kernel[..., 0].reshape(-1) * 2, gates)
    summary = assign_trainable(module, [kernel, bias, gates])
    trainable = {name for name, p in module.named_parameters() if p.requires_grad}
    assert trainable == {"conv_weight", "conv_bias", "gate_a", "gate_b"}
    assert "scaled" in dict(module.named_buffers())
    assert summary.unmatched_reference == 0
    assert summary.trainable == kernel.size + bias.size + gates.size


def test_a_source_weight_with_no_counterpart_is_counted() -> None:
    rng = np.random.default_rng(2)
    kernel = rng.standard_normal((3, 3, 4, 6), dtype=np.float32)
    bias, gates = rng.standard_normal(6, dtype=np.float32), rng.standard_normal(8, dtype=np.float32)
    module = _Converted(kernel, bias, kernel[..., 0].reshape(-1) * 2, gates)
    lost = rng.standard_normal(5, dtype=np.float32)
    assert assign_trainable(module, [kernel, bias, gates, lost]).unmatched_reference == 5
