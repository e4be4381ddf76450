"""Graph passes that make a converted model run like the same architecture written in PyTorch (issue #19).

Keras' ``padding="same"`` and ``ZeroPadding2D`` reach ONNX as a ``Pad`` node before the ``Conv``/pool, so the
converted model copied every padded activation into a new tensor (``F.pad``) where a PyTorch author writes
``nn.Conv2d(..., padding=p)``: ``fold_pads`` moves a symmetric zero pad into the consumer's own ``padding``
(conv; average pool counting the pad; max pool when its input is non-negative, so zeros never win over -inf).
``cancel_permute_pairs`` removes ``permute`` pairs that compose to the identity in the exported ATen graph
(``--nchw`` meeting the ONNX graph's own NHWC->NCHW transpose at the input). ``contiguous_after_input_transposes``:
the NHWC input's permute to NCHW is a free view with channels-last strides, and every conv after it then runs in
channels-last memory format. Measured single-threaded (the converted .pt2, batch 1, channels-last view vs one copy
to contiguous at the input): ResNet50 340 vs 275 ms (PyTorch mixes its im2col and oneDNN convs and copies between
layouts; torchvision's resnet50 on that view is as slow), DenseNet121 203 vs 241, MobileNetV2 60 vs 67,
NASNetMobile 105 vs 145, EfficientNetB0 (batch 2) 166 vs 170. So the copy is made only for models without
depthwise convs (those are fast only in channels-last), which then compute exactly as torchvision does (DenseNet121
gives up its channels-last edge for that: no rule separating it from ResNet50 held on these five models).
All passes are exact.
"""
from __future__ import annotations

from typing import Any


def _spatial_padding(pads: tuple[int, ...], spatial: int) -> tuple[int, ...] | None:
    """``F.pad``-order pads (last axis first) as per-spatial-axis symmetric padding (first axis first), or None
    when the pad is asymmetric or touches the batch/channel axes."""
    pairs = [tuple(pads[i:i + 2]) for i in range(0, len(pads), 2)]
    if len(pairs) > spatial and any(p != (0, 0) for p in pairs[spatial:]):
        return None
    pairs = (pairs + [(0, 0)] * spatial)[:spatial]
    if any(a != b or a < 0 for a, b in pairs):
        return None
    return tuple(a for a, _ in reversed(pairs))


def _non_negative(gm: Any, node: Any) -> bool:
    """The node's output is >= 0 (a ReLU-family module), so a zero pad cannot beat any value under a max."""
    from torch import nn

    if getattr(node, "op", None) != "call_module":
        return False
    mod = gm.get_submodule(node.target)
    return isinstance(mod, (nn.ReLU, nn.ReLU6)) or isinstance(mod, nn.Hardtanh) and mod.min_val >= 0


def _rank(mod: Any) -> int:
    """Spatial axes of a conv or pool module (Conv2d, MaxPool2d, AvgPool2d: 2)."""
    return int(type(mod).__name__[-2])


def _folded(gm: Any, pad: Any, mod: Any, extra: tuple[int, ...]) -> tuple[int, ...] | None:
    """The consumer's new padding, or None when folding ``extra`` into it would change its result."""
    from torch import nn

    old = tuple(mod.padding) if isinstance(mod.padding, (tuple, list)) else (mod.padding,) * len(extra)
    if isinstance(old, tuple) and any(not isinstance(p, int) for p in old):
        return None  # padding="same"/"valid" strings
    new = tuple(int(a) + b for a, b in zip(old, extra))
    if isinstance(mod, nn.modules.conv._ConvNd):
        return new if mod.padding_mode == "zeros" and not isinstance(mod, nn.modules.conv._ConvTransposeNd) \
            else None
    kernel = tuple(mod.kernel_size) if isinstance(mod.kernel_size, (tuple, list)) else (mod.kernel_size,) * len(new)
    if mod.ceil_mode or any(2 * p > k for p, k in zip(new, kernel)):  # torch's own limit: pad <= kernel / 2
        return None
    if isinstance(mod, nn.modules.pooling._AvgPoolNd):
        return new if mod.count_include_pad or not any(old) else None
    dilation = tuple(mod.dilation) if isinstance(mod.dilation, (tuple, list)) else (mod.dilation,)
    if isinstance(mod, nn.modules.pooling._MaxPoolNd) and set(dilation) == {1} and _non_negative(gm, pad.args[0]):
        return new
    return None


def fold_pads(gm: Any) -> int:
    """Fold constant zero pads (``modules.pad_static``) into the padding of their only consumer; returns how many."""
    from torch import nn

    from converter.to_torch import modules as M

    kinds = (nn.modules.conv._ConvNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)
    folded = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not M.pad_static or len(node.users) != 1:
            continue
        x, pads, mode, value = node.args
        user = next(iter(node.users))
        if mode != "constant" or value != 0 or user.op != "call_module" or user.args[:1] != (node,):
            continue
        mod = gm.get_submodule(user.target)
        if not isinstance(mod, kinds) or len([n for n in gm.graph.nodes if n.target == user.target]) != 1:
            continue
        if type(mod).__name__[-2:] not in ("1d", "2d", "3d"):
            continue
        spatial = _spatial_padding(tuple(pads), _rank(mod))
        new = _folded(gm, node, mod, spatial) if spatial is not None else None
        if new is None:
            continue
        mod.padding = new if isinstance(mod, nn.modules.conv._ConvNd) or len(new) > 1 else new[0]
        if isinstance(mod, nn.modules.conv._ConvNd):
            mod._reversed_padding_repeated_twice = [p for p in reversed(new) for _ in range(2)]
        if isinstance(mod, nn.modules.pooling._AvgPoolNd):
            mod.count_include_pad = True  # the folded zeros were counted before too
        user.replace_input_with(node, x)
        gm.graph.erase_node(node)
        folded += 1
    gm.recompile()
    return folded


def cancel_permute_pairs(program: Any) -> int:
    """Remove ``aten.permute`` pairs of an ExportedProgram that compose to the identity; returns how many."""
    import torch

    graph = program.graph_module.graph
    permute = torch.ops.aten.permute.default
    output = next(n for n in graph.nodes if n.op == "output")
    cancelled = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target != permute:
            continue
        inner = node.args[0]
        if getattr(inner, "op", None) != "call_function" or inner.target != permute or output in node.users:
            continue
        p, q = list(inner.args[1]), list(node.args[1])
        if len(p) == len(q) and [p[i] for i in q] == list(range(len(p))):
            node.replace_all_uses_with(inner.args[0])
            graph.erase_node(node)
            cancelled += 1
            if not inner.users:
                graph.erase_node(inner)
    if cancelled:
        program.graph_module.recompile()
    return cancelled


def contiguous_after_input_transposes(gm: Any) -> int:
    """Make the channels-last -> channels-first transpose of each model input a contiguous tensor, unless the model
    has depthwise convs (see above); returns how many."""
    from torch import nn

    if any(isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 for m in gm.modules()):
        return 0
    count = 0
    for ph in [n for n in gm.graph.nodes if n.op == "placeholder"]:
        for user in list(ph.users):
            mod = gm.get_submodule(user.target) if user.op == "call_module" else None
            perm = list(getattr(mod, "perm", None) or ())
            if type(mod).__name__ != "OnnxTranspose" or len(perm) < 3 or perm != [0, len(perm) - 1,
                                                                                    *range(1, len(perm) - 1)]:
                continue
            with gm.graph.inserting_after(user):
                dense = gm.graph.call_method("contiguous", (user,))
            user.replace_all_uses_with(dense, delete_user_cb=lambda n, d=dense: n is not d)
            count += 1
    gm.recompile()
    return count
