"""Hand freed memory back to the operating system between the stages of a conversion.

The upstream tools free hundreds of MB of protobuf / numpy / tensor buffers per stage on a large model; glibc keeps
such memory in its arenas, so the next stage's peak stacks on top of it (ResNet50 on the Keras -> PyTorch ONNX
route: 4.2 GB still held after the tf2onnx export, 1.1 GB after a trim).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

# Set by the console script (``converter.cli.entry``), whose process ends with the command; never by library use.
_FREEZE_AFTER_IMPORTS = False


def release_memory() -> None:
    """``gc.collect()`` (converted models are reference cycles) then glibc's ``malloc_trim(0)``; only the trim is
    skipped where there is no glibc."""
    import gc

    gc.collect()
    trim_heap()


def trim_heap() -> None:
    """glibc's ``malloc_trim(0)``: the freed memory of every arena back to the system (a no-op without glibc).
    Without the collection: for buffers freed by their last reference, where a full collection of a process
    holding torch's ~200,000 module objects costs more than it finds."""
    _glibc("malloc_trim", 0)


# glibc's mallopt parameters, and the largest mmap threshold its dynamic adjustment reaches on 64-bit Linux (the
# trim threshold then follows at twice that).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_HEAP_THRESHOLD = 32 * 2**20
# Blocks from this size up get their own mapping in ``large_blocks_mapped``: the activations of a CNN at 224x224
# (EfficientNet-B0 at batch 2: 3-10 MB each), not the small tensors and Python objects between them.
MAPPED_FROM = 4 * 2**20


@contextlib.contextmanager
def large_blocks_mapped(from_bytes: int = MAPPED_FROM) -> Iterator[None]:
    """Inside: every allocation of ``from_bytes`` or more is its own ``mmap``, given back to the system when freed;
    afterwards: blocks under 32 MB come from the heap again, and the heap's top is kept up to 64 MB, as glibc's
    own adjustment ends up doing (with its default 128 kB trim threshold every call gave its top back and faulted
    it in again: EfficientNet-B0's batch-1 latency read 30-38 ms instead of 24-30). Only for a forked child that
    ends soon after (``converter.conversion.beside_export``): glibc keeps fixed thresholds for the rest of a
    process.

    Why: glibc raises its mmap threshold to the largest block freed so far (up to 32 MB), so once the parent has
    freed a big buffer a model's activations all come from the heap, where freed blocks of one size seldom fit the
    next tensor and the heap grows past the live set. EfficientNet-B0 at batch 2, two runs in a forked child:
    +62 MB from the heap, +27 MB with blocks from 4 MB mapped; ``crossport convert`` to ``.tflite``, five runs
    each interleaved, peak 1,425-1,436 MB against 1,434-1,445. A mapped block costs its page faults on every
    call (0.054 -> 0.079 s per run), so what is timed runs outside."""
    if not _mallopt(_M_MMAP_THRESHOLD, from_bytes):
        yield
        return
    try:
        yield
    finally:
        _mallopt(_M_MMAP_THRESHOLD, _HEAP_THRESHOLD)
        _mallopt(_M_TRIM_THRESHOLD, 2 * _HEAP_THRESHOLD)


def _mallopt(param: int, value: int) -> bool:
    return bool(_glibc("mallopt", param, value))


def _glibc(function: str, *args: int) -> int:
    """glibc's ``function(*args)``; 0 where there is no glibc (another C library, macOS, Windows)."""
    import ctypes

    try:
        return int(getattr(ctypes.CDLL("libc.so.6"), function)(*args))
    except (OSError, AttributeError):
        return 0


def process_ends_with_command() -> None:
    """The console script's process exits when the command returns: framework imports may be frozen."""
    global _FREEZE_AFTER_IMPORTS  # noqa: PLW0603 - one process-wide switch, set once by the entry point
    _FREEZE_AFTER_IMPORTS = True


def settle_imports() -> None:
    """After TensorFlow/Keras are imported: ``gc.freeze()`` the objects that exist now (the frameworks' modules,
    classes and functions, alive until exit anyway), so the collector no longer walks them on every full
    collection. ViT-B/16 build + write: 0.55 s of collections -> 0.03 s, ``release_memory`` 0.35 -> 0.10 s.
    Only in the console script: frozen garbage is never freed, which a library caller's process must not get."""
    if _FREEZE_AFTER_IMPORTS:
        import gc
        import sys

        if "torch" in sys.modules:  # an earlier conversion of a batch may have left cycles: not frozen with it
            gc.collect()
        gc.freeze()


@contextlib.contextmanager
def importing_frameworks() -> Iterator[None]:
    """No automatic collection while a framework imports; if the block imported modules, what exists afterwards is
    frozen (``settle_imports``).

    An import of torch or TensorFlow creates ~200,000 long-lived objects, and the collector's full collections walk
    all of them again each time the heap has grown by a quarter: ``import torch`` + the ``.pt2`` reader took
    2.6-2.9 s with collections and 2.0-2.4 s without; ``import tensorflow, keras`` 2.5-2.6 s and 2.0 s. Without
    them ~9,000 objects of import-time garbage are not collected (a collection afterwards costs 0.25 s); frozen,
    they stay until exit. A block that imported nothing (the next file of a batch) freezes nothing: a frozen
    reference cycle is never freed. Only in the console script, and only where collection is on: a library
    caller's process keeps its collector as it set it."""
    if not _FREEZE_AFTER_IMPORTS:
        yield
        return
    import gc
    import sys

    was_enabled, modules = gc.isenabled(), len(sys.modules)
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if len(sys.modules) > modules:
                gc.freeze()
            gc.enable()
