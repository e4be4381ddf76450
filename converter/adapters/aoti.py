"""AOTInductor: an ``ExportedProgram`` compiled ahead of time into a package (``.pt2``) that a C++ or Python server
loads with ``torch._inductor.aoti_load_package`` -- PyTorch's server-side deployment format now that TorchServe is
no longer maintained.

The only module that calls ``torch._inductor``. Compiling needs a C++ compiler (``g++``/``clang++``, or ``$CXX``);
without one we say so in one line before minutes of work instead of letting Inductor fail deep in a build.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from converter.errors import UnsupportedError

RUNTIME = "torch._inductor.aoti_load_package"


def compiler() -> str | None:
    """The C++ compiler Inductor will use, or None (Inductor reads ``$CXX``, else looks for g++/clang++)."""
    candidates = [os.environ["CXX"]] if os.environ.get("CXX") else []
    candidates += ["g++", "clang++", "c++"]
    return next((shutil.which(c) for c in candidates if shutil.which(c)), None)


def compile_package(program: Any, path: Path) -> tuple[str, ...]:
    """``aoti_compile_and_package`` the program into ``path``; returns notes for the report."""
    cxx = compiler()
    if cxx is None:
        raise UnsupportedError("--to aoti compiles C++ and needs a compiler: install g++ (or clang++) or set CXX")
    import torch
    import torch._inductor  # noqa: F401 - aoti_compile_and_package lives there

    from converter.frameworks import silenced_stderr

    try:
        with silenced_stderr():  # Inductor logs compiler command lines and CUDA probing to stderr
            torch._inductor.aoti_compile_and_package(program, package_path=str(path))
    except Exception as err:  # noqa: BLE001 - Inductor raises many kinds of errors (lowering, C++ build)
        text = str(err).strip()
        line = text.splitlines()[0][:300] if text else type(err).__name__
        raise UnsupportedError(f"AOTInductor could not compile the model: {type(err).__name__}: {line}") from err
    return (f"AOTInductor package for CPU, compiled with {Path(cxx).name}; load it with "
            f"{RUNTIME}(path) (same torch version)",)
