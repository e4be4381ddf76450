"""The source model's verification runs in a forked child: beside the worker's ONNX export for a large
ExportedProgram, before it otherwise (``runs_before_export``: the memory the runs leave goes with the child).

Why: ``torch.onnx.export`` is single-threaded Python (1.5-1.8 s on ViT-B/16) and the source's runs on the
verification sets were made before and after it on both cores (ViT-B/16: 0.5 s at batch 2, 0.23 s at batch 1).
On two cores the child runs them on one thread while the export holds the other; measured on ViT-B/16 the export
took 2.06 / 1.86 s with the child beside it against 1.85 / 1.86 s alone, so the runs left the critical path.

The export needs the number of outputs and their names, which a sequential conversion takes from the first run.
An ExportedProgram states both (``planned_outputs``: its output tree); the child's first run then checks them, and
a disagreement re-exports with what the run returned. Safety of the fork: the child sets one intra-op thread
before any op runs, as PyTorch's DataLoader workers do, so it never enters the parent's OpenMP pool; it returns
arrays through ``converter.forked``'s pipe and exits without unwinding the parent's stack.

Only for an ExportedProgram source in the conversion's forked worker (``converter.conversion.sources``): elsewhere
the process may hold TensorFlow's threads, where a fork is not safe.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from converter.parity.inputs import InputSet


# Below this many bytes of weights a model's runs are too short to pay for the child and for the latency's warm-up
# call the worker then needs (it has not run the model itself). `crossport convert X.pt2 -o X.tflite`, two runs
# each way, 2 CPUs: ResNet-18 (45 MB) 5.3 / 5.1 s beside against 5.2 / 5.3 s without (it finishes loading while
# the parent still imports TensorFlow, so the child is a third process on two cores); ConvNeXt-T (110 MB) 5.8 / 5.9
# against 5.6 / 6.0 s; ViT-B/16 (330 MB) saves ~0.5 s (the source's runs: 0.5 s at batch 2, 0.23 s at batch 1).
MIN_WEIGHT_BYTES = 200 * 2**20


def pays_off(program: Any) -> bool:
    """The program's weights reach ``MIN_WEIGHT_BYTES`` (the size known before any run)."""
    state = getattr(program, "state_dict", None) or {}
    return sum(t.numel() * t.element_size() for t in state.values() if hasattr(t, "element_size")) >= MIN_WEIGHT_BYTES


def planned_outputs(program: Any) -> tuple[int, tuple[str, ...]] | None:
    """How many tensors ``program.module()`` returns and their names (``runners.flatten_outputs``' naming), read
    from its output tree; None when the program does not say."""
    import torch
    from torch.utils import _pytree as pytree

    from converter.parity.runners import flatten_outputs

    spec = getattr(getattr(program, "call_spec", None), "out_spec", None)
    if spec is None or spec.num_leaves == 0:
        return None
    try:
        tensors, names = flatten_outputs(pytree.tree_unflatten([torch.empty(0)] * spec.num_leaves, spec))
    except Exception:  # noqa: BLE001 - an output tree we cannot rebuild: the sequential path
        return None
    return len(tensors), names


def start_source_runs(runner: Any, sets: Sequence[InputSet], verify: bool,
                      first_run: Callable[[Any, InputSet], list[np.ndarray]]) -> Any:
    """Fork; the child runs ``sets[0]`` through ``first_run`` (its one-line shape error) and, when verifying, the
    other sets. ``result()`` gives (outputs per set, output names, seconds of the first run, seconds of the rest)."""
    from converter import forked

    def runs() -> tuple[list[tuple[np.ndarray, ...]], tuple[str, ...], float, float]:
        import torch

        from converter.memory import large_blocks_mapped

        torch.set_num_threads(1)
        with large_blocks_mapped():  # nothing here is timed: the worker times the source after the export
            t0 = time.perf_counter()
            outputs = [tuple(first_run(runner, sets[0]))]
            t1 = time.perf_counter()
            if verify:
                outputs.extend(tuple(runner.run(s.arrays)) for s in sets[1:])
        return outputs, tuple(runner.output_names), t1 - t0, time.perf_counter() - t1

    return forked.start(runs)


def runs_before_export(work: Callable[[], Any], threads: int) -> Any:
    """``work()`` -- the source's runs and its latency -- in a forked child with ``threads`` intra-op threads, before
    the worker exports; None when the child stalled (the caller runs ``work`` itself).

    What a model's runs leave in a process stays there: oneDNN's JIT kernels for each convolution shape, the code
    pages of every kernel used, the allocator's blocks. In the worker they sat under the export's memory, at the
    conversion's peak (MobileNetV3-small: +9 MB, EfficientNet-B0: +13 MB over the tiny model's runs); the child
    takes them with it. The worker has run nothing multi-threaded (``prepare`` holds it at one thread until here),
    so the child starts an OpenMP pool of its own instead of inheriting one it cannot use. ``work`` maps the
    large blocks of the runs it does not time (``memory.large_blocks_mapped``): this child ends with them."""
    from converter import forked

    def child() -> Any:
        import torch

        torch.set_num_threads(threads)
        return work()

    return collect(forked.start(child))


# A child whose CPU time has not moved for this long is stuck, not slow (a forked process that entered a thread
# pool it did not start would wait forever): it is stopped and the worker runs the sets itself.
STALL_S = 20.0


def collect(child: Any) -> Any:
    """The child's result, or None when it stalled (``STALL_S`` without CPU time) and was stopped."""
    import select

    last, still_since = _cpu_seconds(child.pid), time.monotonic()
    while not select.select([child.fd], [], [], 1.0)[0]:
        now = _cpu_seconds(child.pid)
        if now is None or now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > STALL_S:
            import signal

            child.kill(signal.SIGKILL)  # stuck in C: its inherited SIGTERM handler would never run
            return None
    return child.result()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` from /proc (None where unreadable: no stall is ever assumed)."""
    import os

    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def export_beside(child: Any, export: Callable[[], Any]) -> Any:
    """``export()`` while ``child`` runs; if the export fails and the child's run failed too, the child's error is
    the one raised: "the model does not run on inputs of shape ..." says more than the exporter's trace."""
    from converter.errors import CrossportError

    try:
        return export()
    except BaseException as err:
        if not isinstance(err, Exception):
            child.kill()
            raise
        try:
            child.result()
        except CrossportError as cause:
            raise cause from err
        except BaseException:  # noqa: BLE001 - the export's own error stays the one reported
            pass
        raise
