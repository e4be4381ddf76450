"""Hand freed memory back to the operating system between the stages of a conversion.

The upstream tools free hundreds of MB of protobuf / numpy / tensor buffers per stage on a large model; glibc keeps
such memory in its arenas, so the next stage's peak stacks on top of it (ResNet50 on the Keras -> PyTorch ONNX
route: 4.2 GB still held after the tf2onnx export, 1.1 GB after a trim).
"""
from __future__ import annotations


def release_memory() -> None:
    """``gc.collect()`` (converted models are reference cycles) then glibc's ``malloc_trim(0)``; only the trim is
    skipped where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
