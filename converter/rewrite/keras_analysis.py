"""The read-only pre-pass for ``--to torch``: which Keras classes and builder functions hold models, and where
each layer is built.

Keras infers sizes and names at run time; PyTorch states them in the code. Two facts link the two:

* a **site key** for every layer construction, the same key ``keras_probe`` gives the layer it finds in the built
  model — ``Class.attr`` (``self.attr = layers.X(...)``), ``Owner.i`` (the i-th layer of a ``keras.Sequential``),
  ``builder.name`` (a functional-API layer named ``name``);
* the **Keras layer name** of each functional-API layer (``name=`` or Keras' automatic ``conv2d_1`` naming, counted
  statically in creation order as Keras counts it in a fresh session): the rewritten module stores the layer under
  that attribute name, so weights (also those of a trained ``.keras`` file) map by name, never by order.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Callable

import libcst as cst

from converter.rewrite.analysis import _describe, mentions
from rules.keras_names import MODEL_BASES
from rules.model_facts import Analysis, ClassInfo, FunctionalInfo
from rules.cst_walk import walk

QualName = Callable[[cst.CSTNode], "str | None"]
LineOf = Callable[[cst.CSTNode], int]

_ALIASES = {
    "keras.models.Sequential": "keras.Sequential", "keras.models.Model": "keras.Model", "keras.Layer": "keras.layers.Layer",
    "keras.Input": "keras.Input", "keras.layers.Input": "keras.Input",
}
#: Layers whose presence means the model sees channels-last image/sequence-conv tensors (NHWC -> NCHW in torch).
SPATIAL_LAYERS = frozenset(
    f"keras.layers.{n}" for n in (
        "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "DepthwiseConv2D", "SeparableConv2D",
        "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D", "GlobalAveragePooling2D",
        "GlobalMaxPooling2D", "ZeroPadding2D", "UpSampling2D", "SpatialDropout2D", "Cropping2D",
    )
)
#: Weightless layers whose application the rewrite writes inline as an expression (not a module attribute).
INLINE_LAYERS = frozenset(f"keras.layers.{n}" for n in ("Add", "Concatenate", "Multiply", "Subtract", "Average",
                                                         "Permute", "Reshape"))
RECURRENT = {"keras.layers.LSTM": "lstm", "keras.layers.GRU": "gru", "keras.layers.SimpleRNN": "rnn"}


def canonical_keras(name: str) -> str:
    """``tensorflow.keras.layers.Dense`` and ``keras.layers.Dense`` are one thing (as are the model aliases)."""
    if name.startswith("tensorflow.keras."):
        name = name[len("tensorflow."):]
    elif name == "tensorflow.keras":
        name = "keras"
    return _ALIASES.get(name, name)


def snake_case(name: str) -> str:
    """Keras' automatic layer-name prefix for a class name (keras/src/utils/naming.py ``to_snake_case``)."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def is_layer(name: str | None) -> bool:
    if not name or not name.startswith("keras.layers."):
        return False
    last = name.rsplit(".", 1)[-1]
    return last[:1].isupper() and last not in ("Layer", "InputLayer", "InputSpec")


def _keyword(call: cst.Call, key: str) -> cst.BaseExpression | None:
    return next((a.value for a in call.args if a.keyword is not None and a.keyword.value == key), None)


def _literal_str(node: cst.BaseExpression | None) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


def call_kind(call: cst.Call, qname: QualName) -> str | None:
    """How a layer held by an attribute is *called*: ``lstm:last``, ``bigru:seq``, ``mha``, ``add`` ... (None: plainly)."""
    name = qname(call.func) or ""
    prefix = ""
    inner = call
    if name == "keras.layers.Bidirectional" and call.args and isinstance(call.args[0].value, cst.Call):
        inner = call.args[0].value
        name = qname(inner.func) or ""
        prefix = "bi"
    if name in RECURRENT:
        seq = _keyword(inner, "return_sequences")
        return f"{prefix}{RECURRENT[name]}:{'seq' if isinstance(seq, cst.Name) and seq.value == 'True' else 'last'}"
    if name == "keras.layers.MultiHeadAttention":
        return "mha"
    if name in INLINE_LAYERS:
        return name.rsplit(".", 1)[-1].lower()
    return None


class _Sites(cst.CSTVisitor):
    """Layer constructions in one class or function, in Python's evaluation (= Keras creation) order."""

    def __init__(self, qname: QualName, owner: str, classes: dict[str, ClassInfo], creates: dict[str, Counter[str]],
                 functional: FunctionalInfo | None, builders: set[str] | frozenset[str] = frozenset()) -> None:
        self.qname = qname
        self.builders = builders
        self.owner = owner
        self.classes = classes
        self.creates = creates
        self.functional = functional
        self.sites: dict[int, str] = {}
        self.counts: Counter[str] = Counter()
        self.kinds: dict[str, str] = {}
        self.spatial = False
        self.uses: set[str] = set()
        self.sequential_index = 0
        self.calls: set[str] = set()
        self.layer_names: dict[int, str] = {}
        self.ranks: set[int] = set()

    def _layer_name(self, node: cst.Call) -> str | None:
        """The class name Keras derives the automatic layer name from (a local Sequential builder: Sequential)."""
        if not isinstance(node.func, (cst.Name, cst.Attribute)):
            return None  # ``layers.Dense(4)(x)``: QualifiedNameProvider names the call result too
        q = self.qname(node.func)
        if is_layer(q) or q == "keras.Sequential":
            return (q or "").rsplit(".", 1)[-1]
        local = node.func.value if isinstance(node.func, cst.Name) else None
        if local in self.classes and self.classes[local].torch_model:
            return "Sequential" if local in self.builders else local
        return None

    def visit_Call(self, node: cst.Call) -> None:
        q = self.qname(node.func) if isinstance(node.func, (cst.Name, cst.Attribute)) else None
        if q:
            self.calls.add(q)
        cls = self._layer_name(node)
        if cls is not None:
            prefix = snake_case(cls)
            name = _literal_str(_keyword(node, "name"))
            if name is None:  # Keras uniquifies only automatic names (keras/src/utils/naming.py)
                name = prefix if self.counts[prefix] == 0 else f"{prefix}_{self.counts[prefix]}"
                self.counts[prefix] += 1
            local = node.func.value if isinstance(node.func, cst.Name) else None
            if local in self.creates:  # a local block class or builder: the layers it creates count too
                self.counts.update(self.creates[local])
                self.uses.add(local)
                if local in self.builders:  # the builder's own Sequential is already in what it creates
                    self.counts[prefix] -= 1
            if q in SPATIAL_LAYERS:
                self.spatial = True
                self.ranks.add(int(q[-2]) + 2 if q[-2].isdigit() else 4)  # type: ignore[index]
            self.layer_names[id(node)] = name
        func = node.func
        if (isinstance(func, cst.Attribute) and func.attr.value == "append" and node.args
                and isinstance(node.args[0].value, cst.Call) and self._layer_name(node.args[0].value) is not None):
            owner = func.value  # self.blocks.append(layers.Dense(...)): blocks is a list of layers
            if isinstance(owner, cst.Attribute) and isinstance(owner.value, cst.Name) and owner.value.value == "self":
                self.kinds[owner.attr.value] = "list"

    def leave_Call(self, node: cst.Call) -> None:
        if self.functional is not None and isinstance(node.func, cst.Call):
            inner = node.func
            name = self.layer_names.get(id(inner))
            if name is not None and self.qname(inner.func) not in INLINE_LAYERS:
                self.functional.names[id(node)] = name
                self.sites[id(inner)] = f"{self.owner}.{name}"
                kind = call_kind(inner, self.qname)
                if kind:
                    self.kinds[name] = kind

    def visit_Assign(self, node: cst.Assign) -> None:
        target = node.targets[0].target
        if isinstance(node.value, (cst.List, cst.ListComp)) and isinstance(target, cst.Attribute):
            elements = [node.value.elt] if isinstance(node.value, cst.ListComp) else [e.value for e in node.value.elements]
            if any(isinstance(e, cst.Call) and self._layer_name(e) is not None for e in elements):
                self.kinds[target.attr.value] = "list"
        if not isinstance(node.value, cst.Call):
            return
        attr = target.attr.value if isinstance(target, cst.Attribute) and isinstance(target.value, cst.Name) and (
            target.value.value == "self") else None
        q = self.qname(node.value.func)
        if attr is not None:
            self.sites[id(node.value)] = f"{self.owner}.{attr}"
            kind = call_kind(node.value, self.qname)
            if kind:
                self.kinds[attr] = kind
            if q == "keras.Sequential":
                self._sequential(node.value, f"{self.owner}.{attr}")
        elif q == "keras.Sequential" and self.functional is None:
            self._sequential(node.value, self.owner)

    def visit_Return(self, node: cst.Return) -> None:
        if isinstance(node.value, cst.Call) and self.qname(node.value.func) == "keras.Sequential" and self.functional is None:
            self._sequential(node.value, self.owner)

    def visit_Expr(self, node: cst.Expr) -> None:
        # model.add(layers.X(...)): the next position of the Sequential built in this function.
        value = node.value
        if isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute) and value.func.attr.value == "add" and (
            value.args and isinstance(value.args[0].value, cst.Call)
        ):
            layer = value.args[0].value
            if self.qname(layer.func) != "keras.Input":
                self.sites[id(layer)] = f"{self.owner}.{self.sequential_index}"
                self.sequential_index += 1

    def _sequential(self, node: cst.Call, owner: str) -> None:
        listing = node.args[0].value if node.args and isinstance(node.args[0].value, (cst.List, cst.Tuple)) else None
        if listing is None:
            return
        index = 0
        for element in listing.elements:
            value = element.value
            if isinstance(value, cst.Call) and self.qname(value.func) == "keras.Input":
                continue
            self.sites[id(value)] = f"{owner}.{index}"
            index += 1
        if owner == self.owner:
            self.sequential_index = index


def _functional_builder(fn: cst.FunctionDef, qname: QualName) -> bool:
    finder = _Calls(qname)
    walk(fn, finder)
    return "keras.Input" in finder.found and "keras.Model" in finder.found


class _Calls(cst.CSTVisitor):
    def __init__(self, qname: QualName) -> None:
        self.qname = qname
        self.found: set[str] = set()

    def visit_Call(self, node: cst.Call) -> None:
        q = self.qname(node.func) if isinstance(node.func, (cst.Name, cst.Attribute)) else None
        if q:
            self.found.add(q)


def _class_name(fn: cst.FunctionDef) -> str:
    words = [w for w in fn.name.value.split("_") if w]
    if len(words) > 1 and words[0] in ("build", "make", "create", "get", "define"):
        words = words[1:]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Model"
    return name if name != fn.name.value else name + "Module"


def _inputs(fn: cst.FunctionDef, qname: QualName) -> list[str]:
    found: list[str] = []

    class _Finder(cst.CSTVisitor):
        def visit_Assign(self, node: cst.Assign) -> None:
            target = node.targets[0].target
            if isinstance(node.value, cst.Call) and qname(node.value.func) == "keras.Input" and isinstance(target, cst.Name):
                found.append(target.value)

    walk(fn, _Finder())
    return found


def _collect_aliases(stmt: cst.SimpleStatementLine, aliases: set[str]) -> None:
    for small in stmt.body:
        if isinstance(small, cst.Import):
            for alias in small.names:
                full = alias.evaluated_name
                if full.split(".")[0] in ("keras", "tensorflow"):
                    aliases.add(alias.evaluated_alias or full.split(".")[0])
        elif isinstance(small, cst.ImportFrom) and small.module is not None and not isinstance(small.names, cst.ImportStar):
            mod = cst.Module(body=[]).code_for_node(small.module)
            if mod.split(".")[0] in ("keras", "tensorflow"):
                for alias in small.names:
                    aliases.add(alias.evaluated_alias or alias.evaluated_name)


def analyse_keras(module: cst.Module, qname: QualName, line_of: LineOf,
                  hoisted: dict[str, str] | None = None) -> Analysis:
    """Classify the top-level statements of a Keras source: model classes, builder functions, layer sites.

    ``hoisted``: builder functions made from module-level models (``converter.rewrite.hoist``) -> the model's
    variable name, which keys their layer sites; their automatic layer names are counted on across them in file
    order, as Keras counts while the module is imported."""
    result = Analysis()
    hoisted = hoisted or {}
    result.entry_names = dict(hoisted)
    session: Counter[str] = Counter()
    creates: dict[str, Counter[str]] = {}
    for stmt in module.body:
        if isinstance(stmt, cst.SimpleStatementLine) and all(isinstance(s, (cst.Import, cst.ImportFrom)) for s in stmt.body):
            _collect_aliases(stmt, result.keras_aliases)
            continue
        if isinstance(stmt, cst.ClassDef):
            bases = [qname(b.value) or "" for b in stmt.bases]
            local = [b.value.value for b in stmt.bases if isinstance(b.value, cst.Name)]
            is_model = any(b in MODEL_BASES for b in bases) or any(
                n in result.classes and result.classes[n].torch_model for n in local)
            info = ClassInfo(name=stmt.name.value, torch_model=is_model)
            result.classes[info.name] = info
            if is_model:
                sites = _Sites(qname, info.name, result.classes, creates, None, result.builders)
                walk(stmt.body, sites)
                result.sites.update(sites.sites)
                info.rnn_attrs = sites.kinds
                info.spatial = sites.spatial
                info.ranks = sites.ranks
                info.uses = sites.uses | {n for n in local if n in result.classes}
                creates[info.name] = sites.counts
                for used in sites.uses:
                    result.classes[used].used_as_block = True
            continue
        if isinstance(stmt, cst.FunctionDef):
            functional = _functional_builder(stmt, qname)
            fn_info = FunctionalInfo(_class_name(stmt), _inputs(stmt, qname)) if functional else None
            owner = hoisted.get(stmt.name.value, stmt.name.value)
            sites = _Sites(qname, owner, result.classes, creates, fn_info, result.builders)
            if stmt.name.value in hoisted:
                sites.counts = Counter(session)
            walk(stmt, sites)
            if stmt.name.value in hoisted:
                sites.counts, session = sites.counts - session, sites.counts
            if fn_info is not None or "keras.Sequential" in sites.calls:
                result.builders.add(stmt.name.value)
                result.sites.update(sites.sites)
                if fn_info is not None:
                    result.functional[stmt.name.value] = fn_info
                info = ClassInfo(name=stmt.name.value, torch_model=True, spatial=sites.spatial, uses=sites.uses,
                                 ranks=sites.ranks)
                info.rnn_attrs = sites.kinds
                creates[info.name] = sites.counts
                result.classes.setdefault(info.name, info)
                for used in sites.uses:
                    result.classes[used].used_as_block = True
                continue
        if mentions(stmt, result.keras_aliases) or _trains(stmt):
            result.not_rewritten.append((line_of(stmt), _describe(stmt)))
    changed = True
    while changed:  # a model that uses a spatial block sees image tensors too
        changed = False
        for info in result.model_classes():
            if not info.spatial and any(u in result.classes and result.classes[u].spatial for u in info.uses):
                info.spatial = changed = True
    return result



_TRAINING_METHODS = frozenset({"compile", "fit", "evaluate", "predict", "train_on_batch"})


def _trains(stmt: cst.CSTNode) -> bool:
    """Keras training code (``model.compile(...)``, ``model.fit(...)``): listed as not rewritten."""
    found = False

    class _Finder(cst.CSTVisitor):
        def visit_Call(self, node: cst.Call) -> None:
            nonlocal found
            if isinstance(node.func, cst.Attribute) and node.func.attr.value in _TRAINING_METHODS:
                found = True

    walk(stmt, _Finder())
    return found
