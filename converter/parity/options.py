"""What ``crossport verify`` (and the golden check, the pytest plugin, ``assert_parity``) is asked to do."""
from __future__ import annotations

from dataclasses import dataclass, field

from converter.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, DEFAULT_SCALE
from converter.parity.loaders import LoadOptions


@dataclass(frozen=True)
class VerifyOptions:
    """Everything ``verify`` needs besides the two models; the CLI, the plugin and ``assert_parity`` fill it."""

    inputs: str | None = None  # .npz with real inputs, in the reference's layout
    input_shapes: tuple[tuple[str | None, tuple[int, ...]], ...] = ()
    input_dtype: str | None = None
    seed: int = 0
    distributions: tuple[str, ...] = ("normal", "uniform", "large")
    int_ranges: tuple[tuple[str | None, tuple[int, int]], ...] = ()  # --int-range: [NAME=]LO:HI (input_shapes)
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    tolerances: tuple[tuple[str, float, float], ...] = ()  # per output: (name, atol, rtol)
    elementwise: bool = False  # the plain |a-b| <= atol + rtol*|b|, without the scale term (compare.DEFAULT_SCALE)

    @property
    def scale(self) -> float:
        return 0.0 if self.elementwise else DEFAULT_SCALE
    layouts: tuple[str, ...] = ()  # "--layout" strings: [ref:|cand:]NAME=LAYOUT
    manifest: str | None = None
    load: LoadOptions = field(default_factory=LoadOptions)
    layers: bool = False  # per-layer profile even when the outputs match
    localize: bool = True  # look for the first divergent layer when they do not
    save_golden: str | None = None
    command: str = ""  # the command line that reproduces this check, for the report
