"""``converter.memory.large_blocks_mapped``: inside it a large block is a mapping of its own (given back when
freed), outside it the heap serves it again -- checked with glibc's own count of mapped blocks, in a fresh
interpreter (the thresholds it sets stay for the rest of a process)."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt and mallinfo2")

_PROBE = """
import ctypes, json
import numpy as np
from converter.memory import large_blocks_mapped

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = Info

def mapped_while_held(nbytes):
    before = mallinfo2().hblks
    block = np.ones(nbytes, dtype=np.uint8)
    during = mallinfo2().hblks
    del block
    return during - before

big = np.ones(24 << 20, dtype=np.uint8)
del big  # a large block freed: glibc's dynamic threshold rises past 8 MB
seen = {"before": mapped_while_held(12 << 20)}
with large_blocks_mapped(4 << 20):
    seen["inside"] = mapped_while_held(16 << 20)  # more than the heap has free: a mapping, not a bigger heap
    seen["small_inside"] = mapped_while_held(1 << 20)
seen["after"] = mapped_while_held(20 << 20)
print(json.dumps(seen))
"""


def test_large_blocks_are_mapped_only_inside() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    # A 12-20 MB block comes from the heap once the threshold has risen, and again after the block.
    assert seen["before"] == 0 and seen["after"] == 0, seen
    assert seen["inside"] == 1, seen  # its own mapping inside
    assert seen["small_inside"] == 0, seen  # under the size given: the heap, as before
