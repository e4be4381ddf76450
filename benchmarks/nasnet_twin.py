"""NASNet-A (Keras' ``NASNetMobile``) written natively in PyTorch: the twin its Keras -> PyTorch conversion is timed
against (issue #19).

torchvision has no NASNet, and a converted model is judged against what a PyTorch author would write for the same
architecture: NCHW, ``nn.Conv2d`` / ``nn.BatchNorm2d``, separable convs as a depthwise + a pointwise ``nn.Conv2d``,
TF's asymmetric stride-2 padding as ``F.pad``, 'same' average pooling as ``nn.AvgPool2d(count_include_pad=False)``.
Every layer keeps its Keras name (``keras_name``) so that ``tests/test_nasnet_twin.py`` can copy a Keras NASNet's
weights in and show the two compute the same function -- the twin is the same architecture, not a look-alike.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_BN_EPS = 1e-3  # Keras NASNet's BatchNormalization(epsilon=1e-3)


def _correct_pad(size: int, kernel: int) -> tuple[int, int]:
    """Keras' ``imagenet_utils.correct_pad`` for one axis: (before, after)."""
    half = kernel // 2
    return half - (1 - size % 2), half


def _named(module: nn.Module, name: str) -> nn.Module:
    module.keras_name = name  # type: ignore[assignment]
    return module


def _conv_bn(c_in: int, c_out: int, conv: str, bn: str) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), _named(nn.Conv2d(c_in, c_out, 1, bias=False), conv),
                         _named(nn.BatchNorm2d(c_out, eps=_BN_EPS), bn))


class SeparableConv(nn.Module):
    """Keras ``SeparableConv2D(use_bias=False)``: depthwise then pointwise."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, name: str) -> None:
        super().__init__()
        self.keras_name = name
        self.depthwise = nn.Conv2d(c_in, c_in, kernel, stride, kernel // 2 if stride == 1 else 0, groups=c_in,
                                   bias=False)
        self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class SeparableBlock(nn.Module):
    """``_separable_conv_block``: (relu, separable conv, BN) twice; the first may have stride 2."""

    def __init__(self, c_in: int, filters: int, kernel: int, stride: int, block_id: str) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.sep1 = SeparableConv(c_in, filters, kernel, stride, f"separable_conv_1_{block_id}")
        self.bn1 = _named(nn.BatchNorm2d(filters, eps=_BN_EPS), f"separable_conv_1_bn_{block_id}")
        self.sep2 = SeparableConv(filters, filters, kernel, 1, f"separable_conv_2_{block_id}")
        self.bn2 = _named(nn.BatchNorm2d(filters, eps=_BN_EPS), f"separable_conv_2_bn_{block_id}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if self.stride == 2:
            (top, bottom), (left, right) = (_correct_pad(s, self.kernel) for s in x.shape[-2:])
            x = F.pad(x, (left, right, top, bottom))
        x = self.bn1(self.sep1(x))
        return self.bn2(self.sep2(F.relu(x)))


class Adjust(nn.Module):
    """``_adjust_block``: brings the previous cell's output ``p`` to ``filters`` channels at ``ip``'s size."""

    def __init__(self, c_p: int, filters: int, halve: bool, block_id: str) -> None:
        super().__init__()
        self.halve = halve
        if halve:
            self.pool = nn.AvgPool2d(1, 2)
            self.conv1 = _named(nn.Conv2d(c_p, filters // 2, 1, bias=False), f"adjust_conv_1_{block_id}")
            self.conv2 = _named(nn.Conv2d(c_p, filters // 2, 1, bias=False), f"adjust_conv_2_{block_id}")
            self.bn = _named(nn.BatchNorm2d(filters // 2 * 2, eps=_BN_EPS), f"adjust_bn_{block_id}")
        else:
            self.project = _conv_bn(c_p, filters, f"adjust_conv_projection_{block_id}", f"adjust_bn_{block_id}")

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        if not self.halve:
            return self.project(p)
        p = F.relu(p)
        shifted = F.pad(p, (0, 1, 0, 1))[:, :, 1:, 1:]  # ZeroPadding2D((0, 1)) + Cropping2D((1, 0))
        return self.bn(torch.cat([self.conv1(self.pool(p)), self.conv2(self.pool(shifted))], 1))


class _Cell(nn.Module):
    """What both cells start with: the previous input ``p`` adjusted to ``filters``, ``x`` through a 1x1 conv."""

    def __init__(self, c_x: int, c_p: int, p_halve: bool | None, filters: int, kind: str, block_id: str) -> None:
        super().__init__()
        self.adjust = None if p_halve is None else Adjust(c_p, filters, p_halve, block_id)
        self.c_p = filters if p_halve is not None else c_p
        self.h = _conv_bn(c_x, filters, f"{kind}_conv_1_{block_id}", f"{kind}_bn_1_{block_id}")

    def inputs(self, x: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (p if self.adjust is None else self.adjust(p)), self.h(x)


class NormalCell(_Cell):
    def __init__(self, c_x: int, c_p: int, p_halve: bool | None, filters: int, block_id: str) -> None:
        super().__init__(c_x, c_p, p_halve, filters, "normal", block_id)
        c_p = self.c_p
        self.left1 = SeparableBlock(filters, filters, 5, 1, f"normal_left1_{block_id}")
        self.right1 = SeparableBlock(c_p, filters, 3, 1, f"normal_right1_{block_id}")
        self.left2 = SeparableBlock(c_p, filters, 5, 1, f"normal_left2_{block_id}")
        self.right2 = SeparableBlock(c_p, filters, 3, 1, f"normal_right2_{block_id}")
        self.left5 = SeparableBlock(filters, filters, 3, 1, f"normal_left5_{block_id}")
        self.avg = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, h = self.inputs(x, p)
        x1 = self.left1(h) + self.right1(p)
        x2 = self.left2(p) + self.right2(p)
        x3 = self.avg(h) + p
        x4 = self.avg(p) + self.avg(p)
        x5 = self.left5(h) + h
        return torch.cat([p, x1, x2, x3, x4, x5], 1), x


class ReductionCell(_Cell):
    def __init__(self, c_x: int, c_p: int, p_halve: bool | None, filters: int, block_id: str) -> None:
        super().__init__(c_x, c_p, p_halve, filters, "reduction", block_id)
        c_p = self.c_p
        self.left1 = SeparableBlock(filters, filters, 5, 2, f"reduction_left1_{block_id}")
        self.right1 = SeparableBlock(c_p, filters, 7, 2, f"reduction_right1_{block_id}")
        self.right2 = SeparableBlock(c_p, filters, 7, 2, f"reduction_right2_{block_id}")
        self.right3 = SeparableBlock(c_p, filters, 5, 2, f"reduction_right3_{block_id}")
        self.left4 = SeparableBlock(filters, filters, 3, 1, f"reduction_left4_{block_id}")
        self.max = nn.MaxPool2d(3, 2)
        self.avg2 = nn.AvgPool2d(3, 2)
        self.avg1 = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, h = self.inputs(x, p)
        (top, bottom), (left, right) = (_correct_pad(s, 3) for s in h.shape[-2:])
        h3 = F.pad(h, (left, right, top, bottom))
        x1 = self.left1(h) + self.right1(p)
        x2 = self.max(h3) + self.right2(p)
        x3 = self.avg2(h3) + self.right3(p)
        x4 = x2 + self.avg1(x1)
        x5 = self.left4(x1) + self.max(h3)
        return torch.cat([x2, x3, x4, x5], 1), x


class NASNet(nn.Module):
    """``keras.applications.nasnet.NASNet(..., skip_reduction=False)``; defaults are ``NASNetMobile``'s."""

    def __init__(self, penultimate_filters: int = 1056, num_blocks: int = 4, stem_block_filters: int = 32,
                 filter_multiplier: int = 2, num_classes: int = 1000, softmax: bool = True) -> None:
        super().__init__()
        self.softmax = softmax
        filters = penultimate_filters // 24
        self.stem = nn.Sequential(_named(nn.Conv2d(3, stem_block_filters, 3, 2, bias=False), "stem_conv1"),
                                  _named(nn.BatchNorm2d(stem_block_filters, eps=_BN_EPS), "stem_bn1"))
        # (channels, downsamplings) of the cell input x and of the previous cell's input p, to size each Adjust.
        x_shape: tuple[int, int] = (stem_block_filters, 0)
        p_shape: tuple[int, int] | None = None
        cells: list[nn.Module] = []

        def add(kind: type[nn.Module], cell_filters: int, block_id: str) -> None:
            nonlocal x_shape, p_shape
            if p_shape is None:
                p_halve, c_p = None, x_shape[0]
            elif p_shape[1] != x_shape[1]:
                p_halve, c_p = True, p_shape[0]
            elif p_shape[0] != cell_filters:
                p_halve, c_p = False, p_shape[0]
            else:
                p_halve, c_p = None, p_shape[0]
            cells.append(kind(x_shape[0], c_p, p_halve, cell_filters, block_id))
            reduction = kind is ReductionCell
            p_shape = x_shape
            x_shape = (cell_filters * (4 if reduction else 6), x_shape[1] + (1 if reduction else 0))

        add(ReductionCell, filters // filter_multiplier**2, "stem_1")
        add(ReductionCell, filters // filter_multiplier, "stem_2")
        for stage in range(3):
            stage_filters = filters * filter_multiplier**stage
            if stage:
                add(ReductionCell, stage_filters, f"reduce_{stage * num_blocks}")
            for i in range(num_blocks):
                add(NormalCell, stage_filters, str(stage * num_blocks + i + (1 if stage else 0)))
        self.cells = nn.ModuleList(cells)
        self.classifier = _named(nn.Linear(x_shape[0], num_classes), "predictions")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        p = x
        for cell in self.cells:
            x, p = cell(x, p)
        x = F.relu(x).mean((2, 3))
        logits = self.classifier(x)
        return F.softmax(logits, -1) if self.softmax else logits


def load_keras_weights(twin: NASNet, keras_model: Any) -> int:
    """Copies a Keras NASNet's weights into ``twin`` by layer name; returns how many tensors were copied."""
    layers = {layer.name: layer for layer in keras_model.layers}
    copied = 0
    with torch.no_grad():
        for module in twin.modules():
            name = getattr(module, "keras_name", None)
            if name is None:
                continue
            values = [torch.from_numpy(w.numpy() if hasattr(w, "numpy") else w)
                      for w in layers[name].get_weights()]
            if isinstance(module, SeparableConv):
                depthwise, pointwise = values
                module.depthwise.weight.copy_(depthwise.permute(2, 3, 0, 1).reshape(module.depthwise.weight.shape))
                module.pointwise.weight.copy_(pointwise.permute(3, 2, 0, 1))
            elif isinstance(module, nn.Conv2d):
                module.weight.copy_(values[0].permute(3, 2, 0, 1))
            elif isinstance(module, nn.BatchNorm2d):
                gamma, beta, mean, var = values
                for dst, src in ((module.weight, gamma), (module.bias, beta), (module.running_mean, mean),
                                 (module.running_var, var)):
                    dst.copy_(src)
            elif isinstance(module, nn.Linear):
                module.weight.copy_(values[0].T)
                module.bias.copy_(values[1])
            copied += len(values)
    return copied
