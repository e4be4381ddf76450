"""Intermediate files may live in RAM (/dev/shm) for the conversion's duration; the work dir's cleanup removes
them on every exit path, and a full or missing /dev/shm falls back to the work dir."""
from __future__ import annotations

from pathlib import Path

import pytest

from converter.conversion import job as job_module
from converter.conversion.job import memory_scratch, workdir


def test_scratch_lives_in_memory_and_goes_with_the_workdir(tmp_path: Path) -> None:
    if not job_module._SHM.is_dir():  # noqa: SLF001
        pytest.skip("no /dev/shm on this machine")
    with pytest.raises(RuntimeError), workdir(tmp_path) as work:
        route = work / "builder"
        route.mkdir()
        scratch = memory_scratch(route, 1 << 20)
        assert scratch.is_symlink() and scratch.resolve().parent == job_module._SHM  # noqa: SLF001
        (scratch / "model.onnx.data").write_bytes(b"\0" * 1024)
        target = scratch.resolve()
        assert memory_scratch(route, 1 << 20) == scratch  # one per work dir
        raise RuntimeError("a failing conversion")
    assert not target.exists() and not any(tmp_path.iterdir())


def test_no_room_in_memory_uses_the_workdir(tmp_path: Path) -> None:
    with workdir(tmp_path) as work:
        assert memory_scratch(work, 1 << 50) == work  # 1 PiB does not fit
    assert not any(tmp_path.iterdir())
