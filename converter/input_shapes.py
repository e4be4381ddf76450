"""The one ``--input-shape`` grammar for every command: ``1x3x224x224`` or ``name=1x3x224x224`` (``,`` may stand
for ``x``). One value is one input's shape; repeat the flag for several inputs."""
from __future__ import annotations

import re
from typing import Sequence

from converter.errors import ShapeError

_SHAPE = re.compile(r"^(?:(?P<name>[A-Za-z_][\w.:/-]*)=)?(?P<dims>-?\d+(?:[x,]-?\d+)*)$")

NamedShape = tuple[str | None, tuple[int, ...]]


def parse_input_shape(text: str) -> NamedShape:
    m = _SHAPE.match(text.strip())
    if not m:
        raise ShapeError(f"--input-shape {text!r}: expected e.g. 1x3x224x224 or name=1x3x224x224")
    dims = tuple(int(d) for d in re.split(r"[x,]", m.group("dims")))
    if any(d <= 0 for d in dims):
        raise ShapeError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return m.group("name"), dims


def parse_input_shapes(values: Sequence[str]) -> tuple[NamedShape, ...]:
    """Each repeated ``--input-shape`` value, in order."""
    return tuple(parse_input_shape(v) for v in values)


def unnamed_shapes(values: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """For commands that take inputs by position: the shapes, refusing ``name=`` prefixes."""
    shapes = parse_input_shapes(values)
    named = [n for n, _ in shapes if n]
    if named:
        raise ShapeError(f"--input-shape: inputs are given by position here, not by name ({', '.join(named)})")
    return tuple(s for _, s in shapes)


# ---------------------------------------------------------------- --int-range: [NAME=]LO:HI (or LO,HI)

_RANGE = re.compile(r"^(?:(?P<name>[A-Za-z_][\w.:/-]*)=)?(?P<lo>-?\d+)[:,](?P<hi>-?\d+)$")

NamedRange = tuple[str | None, tuple[int, int]]

DEFAULT_INT_RANGE = (0, 10)  # small enough for any vocabulary, large enough to differ between positions


def parse_int_range(text: str) -> NamedRange:
    """``0:1000`` (every integer input) or ``input_ids=0:1000`` (one input); ``LO,HI`` is accepted too."""
    m = _RANGE.match(text.strip())
    if not m:
        raise ShapeError(f"--int-range {text!r}: expected LO:HI or NAME=LO:HI, e.g. input_ids=0:30522")
    lo, hi = int(m.group("lo")), int(m.group("hi"))
    if hi <= lo:
        raise ShapeError(f"--int-range {text!r}: HI must be greater than LO (the range is [LO, HI))")
    return m.group("name"), (lo, hi)


def parse_int_ranges(values: Sequence[str]) -> tuple[NamedRange, ...]:
    """Each repeated ``--int-range`` value; at most one without a name, each name once."""
    ranges = tuple(parse_int_range(v) for v in values)
    names = [n for n, _ in ranges]
    if names.count(None) > 1:
        raise ShapeError("--int-range: give one range for all integer inputs, or NAME=LO:HI per input")
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        raise ShapeError(f"--int-range: input(s) {repeated} given more than once")
    return ranges


def check_range_names(ranges: Sequence[NamedRange], inputs: Sequence[str]) -> None:
    """Refuse ``NAME=`` ranges for inputs the model does not have (a typo would silently use the default)."""
    unknown = [n for n, _ in ranges if n and n not in inputs]
    if unknown and inputs:
        raise ShapeError(f"--int-range names {unknown} are not inputs of the model (inputs: {list(inputs)})")


def int_range_for(name: str, ranges: Sequence[NamedRange], inferred: tuple[int, int] | None = None) -> tuple[int, int]:
    """The range an integer input is drawn from: its own ``NAME=`` range, else the model's own bound (an
    embedding's vocabulary, a mask's 0/1), else the unnamed range, else ``DEFAULT_INT_RANGE``."""
    named = {n: r for n, r in ranges if n}
    if name in named:
        return named[name]
    if inferred is not None:
        return inferred
    return next((r for n, r in ranges if n is None), DEFAULT_INT_RANGE)
