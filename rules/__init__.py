"""Source-rewriting rules, one idiom per module, found by walking this package.

Adding a rule means adding a module under ``torch_to_keras/`` (or ``keras_to_torch/``) that defines a
:class:`rules.base.Rule` subclass; nothing central is edited.
"""
from __future__ import annotations

import importlib
import pkgutil

from rules.base import Rule

_DIRECTIONS = {"keras": "torch_to_keras", "torch": "keras_to_torch"}


def discover_rules(to: str = "keras") -> list[type[Rule]]:
    """All rule classes for the target framework ``to``, in application order (``order``, then id)."""
    package_name = f"{__name__}.{_DIRECTIONS[to]}"
    package = importlib.import_module(package_name)
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.walk_packages(package.__path__, prefix=package_name + "."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Rule)
                and obj is not Rule
                and obj.__module__ == module.__name__
                and obj.id
            ):
                if obj.id in found:
                    raise RuntimeError(f"duplicate rule id {obj.id!r} in {module.__name__}")
                found[obj.id] = obj
    return sorted(found.values(), key=lambda r: (r.order, r.id))
