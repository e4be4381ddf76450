"""Constructor arguments given on the command line as a JSON object (--model-kwargs, --init-kwargs)."""
from __future__ import annotations

import json
from typing import Any

from converter.errors import ModelClassError


def parse_json_object(text: str | None, flag: str) -> dict[str, Any]:
    """The object, or a one-line error naming the flag; an empty value means no arguments."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ModelClassError(f"{flag} is not valid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(value, dict):
        raise ModelClassError(f"{flag} must be a JSON object, e.g. '{{\"num_classes\": 10}}'")
    return value
