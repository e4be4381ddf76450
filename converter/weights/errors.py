"""Weight-mapping failures, named after the parameter that could not be placed."""
from __future__ import annotations

from converter.errors import UnsupportedError


class WeightMappingError(UnsupportedError):
    """A torch parameter/buffer or a Keras variable has no counterpart (or an unsupported layer type)."""

    kind = "weight mapping"


def check_all_used(torch_left: list[str], keras_left: list[str], direction: str) -> None:
    """Raise naming the first parameters/variables a transfer did not use (``direction``: "torch->keras" or back)."""
    for names, what in ((torch_left, "torch parameter(s)"), (keras_left, "Keras variable(s)")):
        if names:
            tail = " ..." if len(names) > 5 else ""
            raise WeightMappingError(f"{what} left unmatched ({direction}): {', '.join(names[:5])}{tail}")
