"""What the engine's read-only pre-pass (``converter.rewrite.analysis``) tells rules about a module's classes.

The data contract between the engine and the rules: rules read these (``ctx.current_class()``, ``ctx.analysis``),
the engine's analysers fill them in.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FunctionalInfo:
    """A Keras functional-API builder function: the class it becomes and the attribute name of each layer."""

    class_name: str
    inputs: list[str] = field(default_factory=list)
    #: id(original layer-application call) -> attribute name (the Keras layer name, so weights map by name).
    names: dict[int, str] = field(default_factory=dict)


@dataclass
class ClassInfo:
    name: str
    #: a model class of the *source* framework (an nn.Module subclass, or a Keras Model/Layer for --to torch).
    torch_model: bool
    spatial: bool = False
    used_as_block: bool = False
    rnn_attrs: dict[str, str] = field(default_factory=dict)
    uses: set[str] = field(default_factory=set)
    assigned_attrs: set[str] = field(default_factory=set)
    #: RNN attributes whose call sites unpack the returned state, and the local names bound to that state.
    state_attrs: set[str] = field(default_factory=set)
    state_names: set[str] = field(default_factory=set)
    #: --to torch: ranks of the image tensors its conv/pool layers see (4 for 2-D layers).
    ranks: set[int] = field(default_factory=set)


@dataclass
class Analysis:
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    builders: set[str] = field(default_factory=set)
    torch_aliases: set[str] = field(default_factory=set)
    not_rewritten: list[tuple[int, str]] = field(default_factory=list)
    #: --to torch only (see keras_analysis): id(original layer call) -> site key; functional builders; Keras aliases.
    sites: dict[int, str] = field(default_factory=dict)
    functional: dict[str, "FunctionalInfo"] = field(default_factory=dict)
    keras_aliases: set[str] = field(default_factory=set)
    #: --to torch: builder functions made from module-level models -> the model's name in the source (the entry).
    entry_names: dict[str, str] = field(default_factory=dict)
    #: receivers of ``.add_module(...)`` calls (``self.features``, ``net``): an empty nn.Sequential there is a
    #: container that grows, not an identity.
    add_module_targets: set[str] = field(default_factory=set)

    def model_classes(self) -> list[ClassInfo]:
        return [c for c in self.classes.values() if c.torch_model]

    def top_models(self) -> list[ClassInfo]:
        return [c for c in self.model_classes() if not c.used_as_block]
