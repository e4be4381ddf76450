"""Import user model code (the explicit opt-in of --verify/transfer) and build a class from it."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

from converter.errors import InputPathError, ModelClassError
from converter.jsonargs import parse_json_object


def parse_init_kwargs(text: str | None) -> dict[str, Any]:
    return parse_json_object(text, "--init-kwargs")


def import_file(path: Path) -> types.ModuleType:
    """Execute a source file as a fresh module (its directory is importable while it runs)."""
    if not path.is_file():
        raise InputPathError(f"{path}: no such file")
    name = "crossport_user_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModelClassError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        with contextlib.redirect_stdout(sys.stderr):  # the user's module-level prints must not mix into our stdout
            spec.loader.exec_module(module)
    except Exception as err:  # noqa: BLE001 - user code can raise anything; report it as one line
        raise ModelClassError(f"{path}: importing the model source failed: {type(err).__name__}: {err}") from None
    finally:
        sys.path.pop(0)
    return module


def import_code(code: str, label: str, directory: Path | None = None) -> types.ModuleType:
    """Execute rewritten code held in memory as a module."""
    module = types.ModuleType("crossport_rewritten_" + hashlib.sha1(code.encode()).hexdigest()[:12])
    module.__file__ = label
    if directory is not None:
        sys.path.insert(0, str(directory.resolve()))
    try:
        with contextlib.redirect_stdout(sys.stderr):
            exec(compile(code, label, "exec"), module.__dict__)  # noqa: S102 - the user opted in to running model code
    except Exception as err:  # noqa: BLE001
        raise ModelClassError(f"{label}: importing the rewritten code failed: {type(err).__name__}: {err}") from None
    finally:
        if directory is not None:
            sys.path.pop(0)
    return module


def build(module: types.ModuleType, class_name: str, kwargs: dict[str, Any], label: str) -> Any:
    cls = getattr(module, class_name, None)
    if cls is None or not isinstance(cls, type):
        raise ModelClassError(f"{label}: no class named {class_name!r}")
    try:
        return cls(**kwargs)
    except Exception as err:  # noqa: BLE001
        raise ModelClassError(f"{label}: {class_name}(**{kwargs}) failed: {type(err).__name__}: {err}") from None
