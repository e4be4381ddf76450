"""The manifest, ``<output>.crossport.json``: the conversion's report beside the model, where ``crossport verify``
reads a candidate's layouts and route."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from converter.errors import OutputError

if TYPE_CHECKING:
    from converter.result import ConversionReport


def manifest_path(output: Path) -> Path:
    """``<output>.crossport.json``: where ``crossport verify`` looks for a candidate's layouts and route."""
    return Path(f"{str(output).rstrip('/')}.crossport.json")


def check_manifest_slot(path: Path, force: bool) -> None:
    """Refuse to clobber a file at the manifest path unless it is a crossport report (or --force)."""
    if not path.exists() or force:
        return
    import json

    try:
        ours = json.loads(path.read_text()).get("kind", "").startswith("crossport.")
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputError(f"{path}: exists and is not a crossport report; move it, pass --no-manifest, or --force")


def write_manifest(artifact: Path | None, report: ConversionReport) -> None:
    """Written after the model was published, through a temp file, so a manifest never describes a missing model."""
    if artifact is None:
        return
    path = manifest_path(artifact)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(report.to_json() + "\n")
    os.replace(tmp, path)
