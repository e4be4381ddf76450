"""What every crossport report is: truthy when it passed, one JSON writer, one statement of the mode compared.

``ConversionReport`` (``crossport convert``) and ``VerifyReport`` (``crossport verify``) both derive from
``Report``; so can any other command's report. JSON has no inf/nan, and ``json.dumps`` writes them as the
non-standard ``Infinity``/``NaN`` (it never calls ``default`` for floats): ``json_text`` writes them as the strings
``"inf"``/``"nan"`` so that every report parses with a strict JSON reader.
"""
from __future__ import annotations

import json
import math
from typing import Any

MODE = "eval (inference; Dropout off, BatchNorm running statistics)"
CRITERION = "|candidate - reference| <= atol + rtol * |reference| + scale * rms(reference)"


def criterion_text(atol: float, rtol: float, scale: float) -> str:
    """The element criterion as the text reports print it (``scale`` 0: element-wise only, ``--elementwise``)."""
    return f"|a-b| <= {atol:g} + {rtol:g}*|b|" + (f" + {scale:g}*rms(b)" if scale else "")


def clean(obj: Any) -> Any:
    """``obj`` with non-finite floats as strings and numpy scalars/arrays as Python values."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):
        return clean(obj.tolist())
    return obj


def json_text(data: dict[str, Any]) -> str:
    """Strict JSON (``allow_nan=False`` holds after ``clean``); anything else unknown is written as its ``str``."""
    return json.dumps(clean(data), indent=2, default=str, allow_nan=False)


class Report:
    """Base of the report dataclasses: subclasses define ``passed`` and ``to_dict``."""

    passed: bool

    def __bool__(self) -> bool:
        return bool(self.passed)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        return json_text(self.to_dict())


def versions(names: tuple[str, ...]) -> dict[str, str]:
    """Installed versions of ``names`` (missing packages left out), for the report's ``versions``."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            pass
    return out
