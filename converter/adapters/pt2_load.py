"""Load a ``.pt2`` ExportedProgram onto the CPU, whatever device it was exported on, with the real cause on failure.

- ``torch.export.load`` swallows the deserializer's ``RuntimeError``, logs its traceback as a warning and raises
  "We ran into an error when deserializing the saved file. Please check the warnings above" -- the cause (e.g.
  "Found no NVIDIA driver") never reaches a one-line message. We call the archive reader it wraps
  (``torch.export.pt2_archive._package.load_pt2``) so the real exception is ours to report, and fall back to
  ``torch.export.load`` only for archives that reader does not handle (the pre-2.8 zip layout).
- A program exported on CUDA stores its weights with ``cuda:0`` and calls ``torch.load`` on CUDA-tagged constants;
  on a machine without a GPU both fail. The archive has no ``map_location``, so for such files we map every
  stored device to the CPU while reading (its ``deserialize_device`` and ``torch.load``'s default
  ``map_location``), then move the graph itself with ``torch.export.passes.move_to_device_pass`` (device arguments
  and fake-tensor metadata). The caller's report says that it was moved.
- The deserializer turns the archive's JSON into its schema dataclasses and asks ``typing.get_type_hints`` for
  every object's class again (torch 2.14, ``torch/_export/serde/serialize.py: _dict_to_dataclass``): 8,700 calls
  and ~0.5 s of MobileNetV3-small's 1.9 s load. The schema classes do not change while reading, so during the read
  that module's ``typing`` answers from a per-class cache (``_schema_type_hints_cached``).
- Every symbolic size of every node's tensor metadata is parsed again with ``sympy.sympify`` (ViT-B/16: 782 parses
  of a few distinct strings, ~0.3 s of a 1.3 s read). A string parses to the same expression for the whole read --
  its symbols resolve to the objects the first parse registered -- so during the read that module's ``sympy``
  answers repeated strings from a cache (``_sympy_parses_cached``); the deserializer's per-expression bookkeeping
  (hints, ranges) still runs on every one.
- Each symbol's range the deserializer sets records where it was set (``ShapeEnv._get_sloc``), which walks the
  stack against ``uninteresting_files()`` -- and that imports ``torch.export._trace`` and AOTAutograd on first use:
  0.33 s of import, ~0.13 s of ViT-B/16's ~1.0 s read, that no later step of a conversion imports. During the read
  the location is the archive itself (``_range_locations_are_the_archive``), which is what it is anyway: a range
  read from a file, not set by user code.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Callable, Iterator

from converter.errors import ModelFileError

_CUDA_SIGNS = ("nvidia driver", "cuda device", "torch.cuda.is_available() is false", "no cuda gpus",
               "cuda driver", "torch not compiled with cuda")


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    """torch logs the tracebacks of archives we may reject anyway; the caller reports one line."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


@contextlib.contextmanager
def _stored_devices_on_cpu() -> Iterator[None]:
    """While reading: every device recorded in the archive deserializes as the CPU."""
    import torch
    import torch.export.pt2_archive._package as package

    real_device, real_load = package.deserialize_device, torch.load

    def cpu_device(spec: Any) -> Any:
        device = real_device(spec)
        return torch.device("cpu") if device.type != "cpu" else device

    def load_on_cpu(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("map_location", "cpu")
        return real_load(*args, **kwargs)

    package.deserialize_device, torch.load = cpu_device, load_on_cpu
    try:
        yield
    finally:
        package.deserialize_device, torch.load = real_device, real_load


@contextlib.contextmanager
def _deserializer_sees(name: str, replace: Callable[[Any], dict[str, Any]]) -> Iterator[None]:
    """During the read, the deserializer's own reference to the module ``name`` (``typing``, ``sympy``) is a copy
    of it with the functions ``replace(module)`` returns; nothing else sees a change. No shortcut where torch's
    layout differs, or where that reference is not the module itself."""
    import sys
    import types

    try:
        from torch._export.serde import serialize
    except ImportError:  # another torch layout
        yield
        return
    module = getattr(serialize, name, None)
    if module is None or module is not sys.modules.get(name):
        yield
        return
    shim = types.ModuleType(name)
    shim.__dict__.update(vars(module))
    shim.__dict__.update(replace(module))
    setattr(serialize, name, shim)
    try:
        yield
    finally:
        setattr(serialize, name, module)


def _schema_type_hints_cached() -> contextlib.AbstractContextManager[None]:
    """See the module docstring: ``typing.get_type_hints`` per schema class, once per read."""
    cache: dict[tuple[Any, bool], Any] = {}

    def replace(typing: Any) -> dict[str, Any]:
        def get_type_hints(obj: Any, globalns: Any = None, localns: Any = None, include_extras: bool = False) -> Any:
            key = (obj, include_extras)
            if localns is not None or not isinstance(obj, type):
                return typing.get_type_hints(obj, globalns, localns, include_extras)
            if key not in cache:
                cache[key] = typing.get_type_hints(obj, globalns, localns, include_extras)
            return cache[key]

        return {"get_type_hints": get_type_hints}

    return _deserializer_sees("typing", replace)


def _sympy_parses_cached() -> contextlib.AbstractContextManager[None]:
    """See the module docstring: ``sympy.sympify`` per distinct string, once per read (torch's own sympy)."""
    cache: dict[str, Any] = {}

    def replace(sympy: Any) -> dict[str, Any]:
        def sympify(a: Any, *args: Any, **kwargs: Any) -> Any:
            if not isinstance(a, str) or args:
                return sympy.sympify(a, *args, **kwargs)
            if a not in cache:
                cache[a] = sympy.sympify(a, **kwargs)
            return cache[a]

        return {"sympify": sympify}

    return _deserializer_sees("sympy", replace)


@contextlib.contextmanager
def _range_locations_are_the_archive(path: Path) -> Iterator[None]:
    """See the module docstring: during the read, a range's recorded location is ``path``, not a stack walk."""
    try:
        from torch._guards import SLoc
        from torch.fx.experimental.symbolic_shapes import ShapeEnv
    except ImportError:  # another torch layout
        yield
        return
    real = vars(ShapeEnv).get("_get_sloc")
    if real is None:
        yield
        return
    where = f"{path} (read from the archive)"

    def archive_sloc(self: Any, framework_loc: Any = None) -> Any:
        return SLoc(framework_loc if framework_loc is not None else where, None)

    ShapeEnv._get_sloc = archive_sloc  # noqa: SLF001
    try:
        yield
    finally:
        ShapeEnv._get_sloc = real  # noqa: SLF001


def _read(path: Path) -> Any:
    import torch
    from torch.export.pt2_archive._package import load_pt2

    with _schema_type_hints_cached(), _sympy_parses_cached(), _range_locations_are_the_archive(path):
        contents = load_pt2(str(path))
    if "model" in contents.exported_programs:
        return contents.exported_programs["model"]
    if contents.exported_programs:
        return next(iter(contents.exported_programs.values()))
    return torch.export.load(str(path))  # the older zip layout, which only torch.export.load reads


def _stored_devices(ep: Any) -> set[str]:
    import torch

    found = {str(t.device) for t in ep.state_dict.values() if hasattr(t, "device")}
    for node in ep.graph.nodes:
        val = node.meta.get("val")
        if hasattr(val, "device"):
            found.add(str(val.device))
        found.update(str(a) for a in (*node.args, *node.kwargs.values()) if isinstance(a, torch.device))
    return found


def load_exported_program(path: Path) -> tuple[Any, tuple[str, ...]]:
    """The program, on the CPU, and notes for the report (e.g. that it was moved from ``cuda:0``)."""
    import torch

    mapped = False
    try:
        with _quiet_logs():
            ep = _read(path)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a bad archive
        cause = _cause(err)
        if not any(sign in cause.lower() for sign in _CUDA_SIGNS):
            raise ModelFileError(f"{path}: not a readable ExportedProgram ({cause})") from err
        try:
            with _quiet_logs(), _stored_devices_on_cpu():
                ep = _read(path)
        except Exception as err2:  # noqa: BLE001
            raise ModelFileError(f"{path}: not a readable ExportedProgram, even with its weights mapped from CUDA "
                                 f"to the CPU ({_cause(err2)})") from err2
        mapped = True
    foreign = sorted(d for d in _stored_devices(ep) if d != "cpu" and d != "meta")
    if foreign:
        import torch.export.passes  # noqa: F401 - registers move_to_device_pass

        try:
            ep = torch.export.passes.move_to_device_pass(ep, "cpu")
        except Exception as err:  # noqa: BLE001
            raise ModelFileError(f"{path}: was exported on {', '.join(foreign)} and could not be moved to the CPU "
                                 f"({_cause(err)})") from err
    if not (mapped or foreign):
        return ep, ()
    where = ", ".join(foreign) or "a CUDA device"
    return ep, (f"the ExportedProgram was made on {where}: its weights and graph were moved to the CPU",)


def _cause(err: BaseException) -> str:
    """The innermost exception's first line: the reason, not torch's "see the warnings above"."""
    while err.__cause__ is not None or (err.__context__ is not None and not err.__suppress_context__):
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return (f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__)[:240]
