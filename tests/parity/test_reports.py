"""JSON and self-contained HTML reports; the HTML of a ResNet-18 check renders in headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from converter.parity.verify import VerifyOptions, verify

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


def _self_contained(text: str) -> None:
    assert "<script" not in text and "<link" not in text and "@import" not in text
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", text)
    assert not re.search(r"url\(\s*['\"]?https?:", text)


def test_html_report_sections(artifacts: dict[str, Path], tmp_path: Path) -> None:
    report = verify(str(artifacts["pt2"]), str(artifacts["broken"]), VerifyOptions(command="crossport verify a b"))
    text = report.write(tmp_path / "r.html").read_text()
    _self_contained(text)
    for needle in ("FAILED", "First divergent layer: <b>bn2</b>", "Route", "Error distribution per output",
                   "Per-layer error along depth", "Reproduce", "crossport verify a b", "Versions", "normal-b2",
                   "<svg", "NHWC"):
        assert needle in text, needle
    assert text.count("<svg") >= 3  # route, one histogram, layers


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_resnet18_html_renders_in_headless_chromium(resnet18: dict[str, Path], tmp_path: Path) -> None:
    report = verify(str(resnet18["pt2"]), str(resnet18["keras"]), VerifyOptions(layers=True))
    assert report.passed, report.format_text()
    assert len(report.layers.layers) > 40
    page = report.write(tmp_path / "resnet18.html")
    _self_contained(page.read_text())
    shot = tmp_path / "resnet18.png"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--hide-scrollbars", "--window-size=1200,2400",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.is_file() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    keep = Path(tempfile.gettempdir()) / "crossport-parity-screenshots"
    keep.mkdir(exist_ok=True)
    shutil.copy(shot, keep / "resnet18-report.png")  # for a human to look at
    shutil.copy(page, keep / "resnet18-report.html")
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
