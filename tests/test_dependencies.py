"""Every package the shipped code imports is declared in pyproject.toml, and every declared one is used.

A direct import that only works because something else happened to pull it in breaks a user's `pip install crossport`
the day that other package drops it. Reads pyproject.toml and the installed distributions' metadata; no network.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("converter", "rules")  # the packages in the wheel
# Declared but not imported by name: why each one is needed anyway.
USED_INDIRECTLY = {
    "onnxscript": "torch.onnx.export's dynamo exporter imports it; torch does not declare it",
    "torchvision": "onnx2torch imports it at import time; factories such as torchvision.models:resnet18",
    "ml-dtypes": "onnx, onnx-ir and TensorFlow import it; declared for its upper bound (0.7.0's import takes 0.55 s)",
}


# Imported only when present, never required: why each one.
IMPORTED_IF_PRESENT = {
    "triton": "torch's own Linux dependency; imported before TensorFlow when installed (tensorflow/tensorflow#124205)",
}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].strip().lower().replace("_", "-")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(d) for d in project["dependencies"]}
    extras = {k: {_requirement_name(d) for d in v} for k, v in project.get("optional-dependencies", {}).items()}
    return core, extras


def _imported_top_levels() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for package in SHIPPED:
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            for node in ast.walk(tree):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in SHIPPED and top != "__future__":
                        found.setdefault(top, []).append(str(path.relative_to(REPO)))
    return found


def _distribution_of(module: str) -> str:
    dists = md.packages_distributions().get(module, [])
    assert dists, f"import {module!r} comes from no installed distribution"
    return dists[0].lower().replace("_", "-")


def test_every_import_is_a_declared_dependency() -> None:
    core, extras = _declared()
    optional = set().union(*extras.values()) - core
    undeclared = {}
    for module, files in _imported_top_levels().items():
        if module in IMPORTED_IF_PRESENT:
            continue
        if module in ("pytest", "_pytest"):  # only the pytest plugin, which pytest itself loads
            assert all("pytest_plugin" in f or "testing" in f for f in files), files
            continue
        try:
            dist = _distribution_of(module)
        except AssertionError:
            if module in ("onnx2tf", "executorch"):  # optional extras, not installed in the test venv
                assert module in optional
                continue
            raise
        if dist not in core and dist not in optional:
            undeclared[module] = (dist, sorted(set(files))[:3])
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_declared_dependency_is_used() -> None:
    core, _ = _declared()
    imported = {_distribution_of(m) for m in _imported_top_levels()
                if m not in ("onnx2tf", "executorch", "pytest", "_pytest", *IMPORTED_IF_PRESENT)}
    unused = core - imported - set(USED_INDIRECTLY)
    assert not unused, f"declared in pyproject.toml but never imported by converter/ or rules/: {sorted(unused)}"


def test_onnx2tf_is_only_an_extra() -> None:
    core, extras = _declared()
    assert "onnx2tf" not in core and "tf-keras" not in core
    assert "onnx2tf" in extras["onnx2tf"]
