"""Parse ``--input-shape`` values: ``1x3x224x224`` or ``name=1x3x224x224``."""
from __future__ import annotations

import re

from converter.errors import ShapeError

_SHAPE = re.compile(r"^(?:(?P<name>[A-Za-z_][\w.:/-]*)=)?(?P<dims>-?\d+(?:[x,]-?\d+)*)$")


def parse_input_shape(text: str) -> tuple[str | None, tuple[int, ...]]:
    m = _SHAPE.match(text.strip())
    if not m:
        raise ShapeError(f"--input-shape {text!r}: expected e.g. 1x3x224x224 or name=1x3x224x224")
    dims = tuple(int(d) for d in re.split(r"[x,]", m.group("dims")))
    if any(d <= 0 for d in dims):
        raise ShapeError(f"--input-shape {text!r}: every dimension must be a positive integer")
    return m.group("name"), dims
