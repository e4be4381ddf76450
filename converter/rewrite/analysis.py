"""A read-only pre-pass over a module: which classes are torch models, which are blocks, which are spatial.

Rules need facts that a single node cannot tell them: whether ``self.lstm`` holds an ``nn.LSTM`` (to fix its call
site), whether a class sees image tensors (to remap dims in channels_last mode), whether a class is used as a
block inside another model (``keras.layers.Layer``) or is a top-level model (``keras.Model``).
"""
from __future__ import annotations

from typing import Callable

import libcst as cst
from rules.cst_walk import walk
from rules.model_facts import Analysis, ClassInfo

#: Layers and functions whose presence means a class handles (N, C, *spatial) tensors.
SPATIAL_NAMES = frozenset(
    f"torch.nn.{n}"
    for n in (
        "Conv1d", "Conv2d", "Conv3d", "LazyConv1d", "LazyConv2d", "LazyConv3d", "ConvTranspose1d",
        "ConvTranspose2d", "ConvTranspose3d", "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d",
        "AvgPool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "BatchNorm2d", "BatchNorm3d",
        "LazyBatchNorm2d", "Upsample", "UpsamplingNearest2d", "Dropout2d", "GroupNorm",
        "functional.conv1d", "functional.conv2d", "functional.max_pool1d", "functional.max_pool2d",
        "functional.avg_pool1d", "functional.avg_pool2d", "functional.adaptive_avg_pool2d", "functional.interpolate",
    )
)
RNN_KINDS = {"torch.nn.LSTM": "lstm", "torch.nn.GRU": "gru", "torch.nn.MultiheadAttention": "mha"}
NOT_MODEL_MARKERS = ("torch.optim", "torch.utils.data", "torch.save", "torch.load")


QualName = Callable[[cst.CSTNode], "str | None"]
LineOf = Callable[[cst.CSTNode], int]


class _Collector(cst.CSTVisitor):
    """Collects qualified names called, local names referenced, self.<attr> = <rnn> assignments."""

    def __init__(self, qname: QualName) -> None:
        self.qname = qname
        self.called: set[str] = set()
        self.names: set[str] = set()
        self.rnn_attrs: dict[str, str] = {}
        self.assigned_attrs: set[str] = set()
        self.unpacks: list[tuple[str, cst.BaseExpression]] = []
        self.has_backward = False
        self.adders: set[str] = set()

    def visit_Call(self, node: cst.Call) -> None:
        q = self.qname(node.func)
        if q:
            self.called.add(q)
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("backward", "zero_grad"):
            self.has_backward = True
        if isinstance(node.func, cst.Attribute) and node.func.attr.value in ("add_module", "register_module"):
            self.adders.add(cst.Module(body=[]).code_for_node(node.func.value))

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        q = self.qname(node)
        if q:
            self.called.add(q)

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            if isinstance(t.target, cst.Attribute) and isinstance(t.target.value, cst.Name) and t.target.value.value == "self":
                self.assigned_attrs.add(t.target.attr.value)
        if len(node.targets) != 1 or not isinstance(node.value, cst.Call):
            return
        if isinstance(node.targets[0].target, cst.Tuple):
            func = node.value.func
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self":
                self.unpacks.append((func.attr.value, node.targets[0].target))
        target = node.targets[0].target
        kind = RNN_KINDS.get(self.qname(node.value.func) or "")
        if kind and isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and target.value.value == "self":
            self.rnn_attrs[target.attr.value] = kind


def _is_layer_ctor(q: str) -> bool:
    if not q.startswith("torch.nn."):
        return False
    last = q.rsplit(".", 1)[-1]
    return last[:1].isupper() and ".functional." not in q


def analyse(module: cst.Module, qname: QualName, line_of: LineOf) -> Analysis:
    """Classify the top-level statements of ``module``."""
    result = Analysis()
    collectors: dict[str, _Collector] = {}
    builder_collectors: dict[str, _Collector] = {}
    for stmt in module.body:
        if isinstance(stmt, (cst.Import, cst.ImportFrom)) or (
            isinstance(stmt, cst.SimpleStatementLine) and all(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body)
        ):
            for s in stmt.body if isinstance(stmt, cst.SimpleStatementLine) else [stmt]:
                _collect_aliases(s, result.torch_aliases)
            continue
        if isinstance(stmt, cst.ClassDef):
            base_names = [qname(b.value) or "" for b in stmt.bases]
            local_bases = [b.value.value for b in stmt.bases if isinstance(b.value, cst.Name)]
            is_model = "torch.nn.Module" in base_names or any(
                n in result.classes and result.classes[n].torch_model for n in local_bases
            )
            info = ClassInfo(name=stmt.name.value, torch_model=is_model)
            result.classes[info.name] = info
            if is_model:
                col = _Collector(qname)
                walk(stmt.body, col)
                collectors[info.name] = col
                info.rnn_attrs = col.rnn_attrs
                info.assigned_attrs = set(col.assigned_attrs)
                _record_states(info, col)
                info.spatial = bool(col.called & SPATIAL_NAMES)
                for n in local_bases:  # inherit facts from a local base model class
                    if n in result.classes and result.classes[n].torch_model:
                        info.uses.add(n)
                        info.rnn_attrs = {**result.classes[n].rnn_attrs, **info.rnn_attrs}
                        info.assigned_attrs |= result.classes[n].assigned_attrs
            continue
        if isinstance(stmt, cst.FunctionDef):
            col = _Collector(qname)
            walk(stmt, col)
            makes_layers = any(_is_layer_ctor(q) for q in col.called)
            suspicious = col.has_backward or any(q.startswith(NOT_MODEL_MARKERS) for q in col.called)
            if makes_layers and not suspicious:
                result.builders.add(stmt.name.value)
                builder_collectors[stmt.name.value] = col
                continue
        if _mentions(stmt, result.torch_aliases):
            result.not_rewritten.append((line_of(stmt), _describe(stmt)))
    for col in (*collectors.values(), *builder_collectors.values()):
        result.add_module_targets |= col.adders
    # Which local classes/builders each model class (or builder) uses; spatial-ness flows along "uses".
    spatial_builders = {b for b, c in builder_collectors.items() if c.called & SPATIAL_NAMES}
    for name, col in {**collectors, **builder_collectors}.items():
        used = {n for n in col.names if n in result.classes and result.classes[n].torch_model and n != name}
        for n in used:
            result.classes[n].used_as_block = True
        if name in result.classes:
            result.classes[name].uses |= used | {b for b in col.names if b in result.builders}
            if col.names & spatial_builders:
                result.classes[name].spatial = True
    changed = True
    while changed:
        changed = False
        for info in result.model_classes():
            if not info.spatial and any(
                (u in result.classes and result.classes[u].spatial)
                or (u in builder_collectors and _builder_spatial(u, builder_collectors, result))
                for u in info.uses
            ):
                info.spatial = changed = True
    return result


def _record_states(info: ClassInfo, col: _Collector) -> None:
    """``out, (h, c) = self.lstm(x)`` / ``out, h = self.gru(x)``: the state is used, Keras must return it."""
    for attr, target in col.unpacks:
        kind = info.rnn_attrs.get(attr)
        if kind not in ("lstm", "gru") or len(target.elements) != 2:
            continue
        state = target.elements[1].value
        names = [e.value.value for e in state.elements if isinstance(e.value, cst.Name)] if isinstance(
            state, cst.Tuple) else ([state.value] if isinstance(state, cst.Name) else [])
        names = [n for n in names if n != "_"]
        if names:
            info.state_attrs.add(attr)
            info.state_names.update(names)


def _builder_spatial(name: str, cols: dict[str, _Collector], result: Analysis) -> bool:
    col = cols[name]
    if col.called & SPATIAL_NAMES:
        return True
    return any(n in result.classes and result.classes[n].spatial for n in col.names)


def _collect_aliases(stmt: cst.CSTNode, aliases: set[str]) -> None:
    if isinstance(stmt, cst.Import):
        for alias in stmt.names:
            full = cst.Module(body=[]).code_for_node(alias.name)
            if full == "torch" or full.startswith("torch."):
                aliases.add(alias.asname.name.value if alias.asname else full.split(".")[0])  # type: ignore[union-attr]
    elif isinstance(stmt, cst.ImportFrom) and stmt.module is not None:
        mod = cst.Module(body=[]).code_for_node(stmt.module)
        if (mod == "torch" or mod.startswith("torch.")) and not isinstance(stmt.names, cst.ImportStar):
            for alias in stmt.names:
                aliases.add(alias.asname.name.value if alias.asname else alias.name.value)  # type: ignore[union-attr]


class _NameFinder(cst.CSTVisitor):
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.found = False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.names:
            self.found = True

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        walk(node.value, self)  # the attribute name itself (``self.nn``) is not a reference
        return False


def _mentions(stmt: cst.CSTNode, names: set[str]) -> bool:
    finder = _NameFinder(names)
    walk(stmt, finder)
    return finder.found


def mentions(node: cst.CSTNode, names: set[str]) -> bool:
    """Whether ``node`` references any of ``names`` (ignoring attribute names such as ``self.nn``)."""
    return _mentions(node, names)


def _describe(stmt: cst.CSTNode) -> str:
    if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
        return f"{'def' if isinstance(stmt, cst.FunctionDef) else 'class'} {stmt.name.value}"
    text = cst.Module(body=[]).code_for_node(stmt).strip().splitlines()
    first = text[0] if text else ""
    return first if len(first) <= 60 else first[:57] + "..."
