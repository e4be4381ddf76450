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
