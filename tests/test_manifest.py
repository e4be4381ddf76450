"""convert leaves <output>.crossport.json beside a published model so `crossport verify` needs no --layout."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from converter.cli import main
from fixtures import save


def test_verify_reads_the_manifest_convert_wrote(saved_sources, tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    runner = CliRunner()
    res = runner.invoke(main, ["convert", str(saved_sources["pt2"]), "-o", str(out), "-q"])
    assert res.exit_code == 0, res.output
    manifest = tmp_path / "m.keras.crossport.json"
    data = json.loads(manifest.read_text())
    assert data["kind"] == "crossport.conversion" and data["passed"] and data["output"] == str(out)
    assert data["inputs"][0]["source_layout"] == "NCHW" and data["inputs"][0]["target_layout"] == "NHWC"
    # NCHW PyTorch vs NHWC Keras: without the manifest verify would have to be told the layouts.
    res = runner.invoke(main, ["verify", str(saved_sources["pt2"]), str(out)])
    assert res.exit_code == 0, res.output
    manifest.unlink()  # the same contract is inside the .keras file
    res = runner.invoke(main, ["verify", str(saved_sources["pt2"]), str(out)])
    assert res.exit_code == 0 and "embedded" in res.output, res.output
    bare = save.without_contract(out, tmp_path / "bare.keras")  # without either, verify must be told the layouts
    res = runner.invoke(main, ["verify", str(saved_sources["pt2"]), str(bare)])
    assert res.exit_code == 7 and "--layout" in res.output


def test_no_manifest_flag_and_foreign_file_kept(saved_sources, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "a.onnx"
    res = runner.invoke(main, ["convert", str(saved_sources["pt2"]), "-o", str(out), "-q", "--no-manifest"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]
    out = tmp_path / "b.onnx"
    foreign = tmp_path / "b.onnx.crossport.json"
    foreign.write_text("my notes\n")
    res = runner.invoke(main, ["convert", str(saved_sources["pt2"]), "-o", str(out), "-q"])
    assert res.exit_code == 6 and "b.onnx.crossport.json" in res.output
    assert foreign.read_text() == "my notes\n" and not out.exists()
