"""Graph passes that make a converted model run like the same architecture written in PyTorch (issue #19).

Keras' ``padding="same"`` and ``ZeroPadding2D`` reach ONNX as a ``Pad`` node before the ``Conv``/pool, so the
converted model copied every padded activation into a new tensor (``F.pad``) where a PyTorch author writes
``nn.Conv2d(..., padding=p)``: ``fold_pads`` moves a symmetric zero pad into the consumer's own ``padding``
(conv; average pool counting the pad; max pool when its input is non-negative, so zeros never win over -inf).
``inplace_activations`` lets a ReLU/ReLU6 overwrite a conv, BatchNorm, Linear or sum output that nothing else
reads. ``cancel_permute_pairs`` removes ``permute`` pairs that compose to the identity in the exported ATen graph
(``--nchw`` meeting the ONNX graph's own NHWC->NCHW transpose at the input). ``channels_last_weights``: the NHWC
input's permute to NCHW is a free view with channels-last strides; with the conv weights stored channels-last too,
every conv runs in channels-last, as a PyTorch author tuning for CPU runs torchvision's models
(``model.to(memory_format=torch.channels_last)``).
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


def _shifted(pads: tuple[int, ...], mod: Any) -> tuple[tuple[int, ...], tuple[tuple[int, int, int], ...]] | None:
    """For an asymmetric zero pad (TF's 'same' at stride 2 pads one more after than before) in front of a conv: the
    conv's symmetric padding and ``modules.crop_shifted``'s spec giving the same outputs, else None.

    Per axis with pads (b, a), b <= a <= b + stride: padding P = b + stride makes output j + 1 the padded conv's
    output j, so the result is the window starting at 1 (0 when a == b and P = b) with the padded conv's length.
    The conv reads its input in place where ``F.pad`` copied it; it computes at most two extra rows per axis."""
    from torch import nn

    if not isinstance(mod, nn.modules.conv._ConvNd) or isinstance(mod, nn.modules.conv._ConvTransposeNd) \
            or mod.padding_mode != "zeros" or isinstance(mod.padding, str):
        return None
    rank = _rank(mod)
    pairs = [tuple(pads[i:i + 2]) for i in range(0, len(pads), 2)]
    if len(pairs) > rank and any(p != (0, 0) for p in pairs[rank:]):
        return None
    pairs = list(reversed((pairs + [(0, 0)] * rank)[:rank]))  # first spatial axis first
    padding, spec = [], []
    for (b, a), old, k, s, d in zip(pairs, mod.padding, mod.kernel_size, mod.stride, mod.dilation):
        b, a = b + old, a + old
        if not 0 <= b <= a <= b + s:
            return None
        start = 0 if a == b else 1
        padding.append(b + s * start)
        spec.append((start, b + a - d * (k - 1) - 1, s))
    return tuple(padding), tuple(spec)


def _split_padded_convs(gm: Any) -> None:
    """onnx2torch turns a Conv with asymmetric ``pads`` (tf2onnx's form of TF 'same' at stride 2) into
    ``Sequential(OnnxPadStatic, Conv)``: made a ``pad_static`` call and the conv alone under the same name, so such
    a pad folds like a ``ZeroPadding2D`` one (or stays the same ``F.pad``)."""
    from torch import nn

    from converter.to_torch import modules as M

    for node in list(gm.graph.nodes):
        mod = gm.get_submodule(node.target) if node.op == "call_module" else None
        if not isinstance(mod, nn.Sequential) or len(mod) != 2 or len(node.args) != 1 or node.kwargs:
            continue
        pad, conv = mod
        if type(pad).__name__ != "OnnxPadStatic" or not isinstance(conv, nn.modules.conv._ConvNd):
            continue
        if sum(n.target == node.target for n in gm.graph.nodes if n.op == "call_module") != 1:
            continue
        parent, _, leaf = str(node.target).rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, leaf, conv)
        with gm.graph.inserting_before(node):
            padded = gm.graph.call_function(M.pad_static, (node.args[0], tuple(pad.pads), pad.mode,
                                                           float(pad.constant_value)))
        node.args = (padded,)


def fold_pads(gm: Any) -> int:
    """Fold constant zero pads (``modules.pad_static``) into the padding of their only consumer; returns how many."""
    from torch import nn

    from converter.to_torch import modules as M

    kinds = (nn.modules.conv._ConvNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._MaxPoolNd)
    _split_padded_convs(gm)
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
            shifted = _shifted(tuple(pads), mod)
            if shifted is None:
                continue
            new, spec = shifted
            with gm.graph.inserting_after(user):
                crop = gm.graph.call_function(M.crop_shifted, (user, x, spec))
            user.replace_all_uses_with(crop, delete_user_cb=lambda n, c=crop: n is not c)
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


def _fresh(gm: Any, node: Any) -> bool:
    """The node's output is a tensor of its own (no view of an input, a weight or another node's output)."""
    import operator

    import torch
    from torch import nn

    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return isinstance(mod, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.Linear)) or (
            type(mod).__name__ == "OnnxBinaryMathOperation"
            and getattr(mod, "math_op_function", None) in (torch.add, torch.mul, torch.sub)
            and len(node.args) == 2 and all(isinstance(a, torch.fx.Node) for a in node.args))
    return node.op == "call_function" and node.target in (operator.add, operator.mul, operator.sub, torch.add,
                                                           torch.mul, torch.sub) and any(
        isinstance(a, torch.fx.Node) for a in node.args)


def inplace_activations(gm: Any) -> int:
    """Let ReLU-family modules overwrite their input when nothing else reads it, as torchvision's
    ``ReLU(inplace=True)`` does: no new activation tensor (MobileNetV2's ReLU6 wrote 35 of them per call); returns
    how many. Exact: the value is the same, only where it is written changes."""
    from torch import nn

    uses: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            uses[node.target] = uses.get(node.target, 0) + 1
    count = 0
    for node in gm.graph.nodes:
        if node.op != "call_module" or uses[node.target] != 1 or len(node.args) != 1 or node.kwargs:
            continue
        mod = gm.get_submodule(node.target)
        x = node.args[0]
        if not isinstance(mod, (nn.ReLU, nn.Hardtanh)) or mod.inplace or len(x.users) != 1 or not _fresh(gm, x):
            continue
        mod.inplace = True
        count += 1
    return count


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


def channels_last_weights(gm: Any) -> int:
    """Store the 2-D conv weights channels-last when a model input is an NHWC tensor transposed to NCHW (a view
    with channels-last strides), so every conv runs oneDNN's channels-last kernel on both operands; returns how many
    weights. PyTorch picks a conv's memory format from its input and weight: a channels-last input with contiguous
    weights ran ResNet50 at 100.9 ms against 88.5 ms with one copy of the input to contiguous; with channels-last
    weights it runs at 77.2 ms, as fast as torchvision's resnet50 made channels-last (76.8 ms)."""
    import torch
    from torch import nn

    if not any(_nhwc_input_transpose(gm, user) for ph in gm.graph.nodes if ph.op == "placeholder"
               for user in ph.users):
        return 0
    count = 0
    for mod in gm.modules():
        if isinstance(mod, nn.Conv2d) and mod.weight.dim() == 4:
            mod.weight.data = mod.weight.data.contiguous(memory_format=torch.channels_last)
            count += 1
    return count


def _nhwc_input_transpose(gm: Any, node: Any) -> bool:
    """The node transposes a rank-4 model input from NHWC to NCHW."""
    if node.op != "call_module":
        return False
    mod = gm.get_submodule(node.target)
    return type(mod).__name__ == "OnnxTranspose" and list(getattr(mod, "perm", None) or ()) == [0, 3, 1, 2]
