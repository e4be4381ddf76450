"""Rewrite-specific errors, as subclasses of the shared ones so exit codes stay documented."""
from __future__ import annotations

from converter.errors import ModelFileError


class SourceSyntaxError(ModelFileError):
    """The source file is not valid Python, so there is nothing to rewrite."""

    kind = "unparsable source"
