"""Weight-mapping failures, named after the parameter that could not be placed."""
from __future__ import annotations

from converter.errors import UnsupportedError


class WeightMappingError(UnsupportedError):
    """A torch parameter/buffer or a Keras variable has no counterpart (or an unsupported layer type)."""

    kind = "weight mapping"
