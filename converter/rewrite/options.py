"""Options and results of a source rewrite (frozen: they cross the CLI/library boundary)."""
from __future__ import annotations

from dataclasses import dataclass, field

LAYOUTS = ("channels_first", "channels_last")
#: Default layout: idiomatic NHWC Keras, which every Keras backend runs eagerly on CPU. channels_first output
#: needs XLA on TensorFlow-CPU (eager NCHW Conv2D is unimplemented there). See README.md ("Layout").
DEFAULT_LAYOUT = "channels_last"
TARGETS = ("keras", "torch")


@dataclass(frozen=True)
class RewriteOptions:
    to: str = "keras"
    layout: str = DEFAULT_LAYOUT
    only_rules: tuple[str, ...] = ()
    #: --to torch with --input-shape: input shape (Keras order, batch None) of each layer site, from one run of the
    #: user's Keras code (``converter.rewrite.keras_probe``); keys are the site keys of ``keras_analysis``.
    facts: tuple[tuple[str, object], ...] = ()
    #: --to keras without an explicit --layout: when channels_last leaves TODOs only because an axis' meaning is
    #: unknown in NHWC (view/permute/size of image tensors), rewrite in channels_first (exact NCHW code) instead.
    layout_auto: bool = False

    def __post_init__(self) -> None:
        if self.to not in TARGETS:
            raise ValueError(f"--to must be one of {TARGETS} (got {self.to!r})")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS} (got {self.layout!r})")


@dataclass(frozen=True)
class Todo:
    line: int
    rule_id: str
    why: str


@dataclass(frozen=True)
class RewriteResult:
    """The rewritten code and what happened to the source on the way."""

    source: str
    code: str
    applied: tuple[tuple[str, int], ...]
    todos: tuple[Todo, ...]
    not_rewritten: tuple[tuple[int, str], ...]
    model_classes: tuple[str, ...]
    top_models: tuple[str, ...]
    spatial_classes: tuple[str, ...]
    layout: str = "channels_first"
    filename: str = "<string>"
    notes: tuple[str, ...] = field(default=())
    #: the target framework of the rewrite ("keras" or "torch").
    to: str = "keras"
    #: top-level classes/functions rewritten in another layout than ``layout`` (a per-group fallback).
    class_layouts: tuple[tuple[str, str], ...] = field(default=())

    def layout_of(self, name: str) -> str:
        """The layout model ``name`` was rewritten in."""
        return dict(self.class_layouts).get(name, self.layout)

    @property
    def changed(self) -> bool:
        return self.code != self.source
