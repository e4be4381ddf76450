"""``benchmarks/common.run_measured``: the time of a run the memory probe does not watch, the peak of one it does."""
from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.common import run_child, run_measured

# Refuses an existing output, as ``crossport convert`` does; holds ~200 MiB for a moment so the probe sees it.
WRITER = """
import sys, time
from pathlib import Path
out = Path(sys.argv[1])
if out.exists():
    sys.exit(9)
block = bytearray(200 * 2**20)
for i in range(0, len(block), 4096):
    block[i] = 1
time.sleep(0.4)
out.write_text("done")
with open(sys.argv[2], "a") as runs:
    runs.write("run\\n")
"""


def test_time_from_an_unprobed_run_peak_from_the_probed_one(tmp_path: Path) -> None:
    out, runs, log = tmp_path / "model.out", tmp_path / "runs.txt", tmp_path / "convert.log"
    result = run_measured([sys.executable, "-c", WRITER, str(out), str(runs)], log, (out,), cwd=tmp_path,
                          timeout_s=60)
    assert result.exit_code == 0  # the probed run's output was removed, so the second run did not refuse it
    assert runs.read_text().count("run") == 2
    assert out.read_text() == "done"
    assert result.probe_wall_s is not None and result.probe_wall_s > 0.4
    assert result.peak_rss_mib > 200
    assert (tmp_path / "convert.log.memory.log").exists() and log.exists()


def test_a_probed_run_that_timed_out_is_not_repeated(tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    slow = f"open({str(runs)!r}, 'a').write('run\\n'); import time; time.sleep(30)"
    result = run_measured([sys.executable, "-c", slow], tmp_path / "slow.log", (), cwd=tmp_path, timeout_s=1.5)
    assert result.timed_out and result.exit_code is None
    assert runs.read_text().count("run") == 1


def test_without_the_probe_the_peak_is_the_largest_process(tmp_path: Path) -> None:
    out, runs = tmp_path / "model.out", tmp_path / "runs.txt"
    result = run_child([sys.executable, "-c", WRITER, str(out), str(runs)], tmp_path / "one.log", cwd=tmp_path,
                       timeout_s=60, probe=False)
    assert result.exit_code == 0 and result.probe_wall_s is None
    assert result.peak_rss_mib > 200  # ru_maxrss of the one process
