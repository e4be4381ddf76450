"""converter.adapters.pt2_load's read shortcuts (cached schema type hints, cached sympy parses, ranges located in
the archive) give the program ``torch.export.load`` gives: same graph, same symbolic ranges, same outputs at two
batch sizes."""
from __future__ import annotations

from pathlib import Path

import pytest

from converter.errors import ModelFileError


def test_cached_read_matches_torch_export_load(tmp_path: Path) -> None:
    import torch

    from converter.adapters import pt2_load

    class Shapes(torch.nn.Module):
        """Symbolic sizes of several forms in the metadata: s, 2*s, s*64 (reshape, cat, flatten)."""

        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.fc = torch.nn.Linear(4 * 4 * 4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.avg_pool2d(self.conv(x), 2)
            both = torch.cat([y, y * 2], dim=0)  # batch 2*s
            flat = both.reshape(both.shape[0], -1)
            return self.fc(flat).reshape(2, x.shape[0], 5).sum(0)

    torch.manual_seed(0)
    model = Shapes().eval()
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    ours, notes = pt2_load.load_exported_program(tmp_path / "m.pt2")
    theirs = torch.export.load(str(tmp_path / "m.pt2"))
    assert notes == ()
    assert str(ours.graph) == str(theirs.graph)
    assert {str(k): str(v) for k, v in ours.range_constraints.items()} == \
        {str(k): str(v) for k, v in theirs.range_constraints.items()}
    metas = [str(n.meta["val"].shape) for n in ours.graph.nodes if hasattr(n.meta.get("val"), "shape")]
    assert metas == [str(n.meta["val"].shape) for n in theirs.graph.nodes if hasattr(n.meta.get("val"), "shape")]
    assert any("2*s" in m for m in metas)  # a derived size was parsed, not only the plain symbol
    for b in (1, 3):
        x = torch.randn(b, 3, 8, 8)
        assert torch.equal(ours.module()(x), theirs.module()(x))


def test_the_shortcuts_restore_the_deserializers_modules(tmp_path: Path) -> None:
    import typing

    import sympy
    from torch._export.serde import serialize

    from converter.adapters import pt2_load

    with pytest.raises(ModelFileError):
        pt2_load.load_exported_program(tmp_path / "missing.pt2")
    assert serialize.sympy is sympy and serialize.typing is typing


def test_every_shortcut_is_in_place_during_the_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import torch
    import torch.export.pt2_archive._package as package
    from torch._export.serde import serialize
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    from converter.adapters import pt2_load

    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(torch.nn.Linear(3, 2), (torch.randn(2, 3),), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    seen: dict[str, bool] = {}
    real, real_sloc = package.load_pt2, ShapeEnv._get_sloc

    def spy(*args: object, **kwargs: object) -> object:
        seen.update({name: getattr(serialize, name) is not sys.modules[name] for name in ("sympy", "typing")})
        seen["sloc"] = ShapeEnv._get_sloc is not real_sloc
        return real(*args, **kwargs)

    monkeypatch.setattr(package, "load_pt2", spy)
    ours, _ = pt2_load.load_exported_program(tmp_path / "m.pt2")
    assert seen == {"sympy": True, "typing": True, "sloc": True}
    assert serialize.sympy is sys.modules["sympy"] and serialize.typing is sys.modules["typing"]
    assert ShapeEnv._get_sloc is real_sloc
    shape_env = next(n.meta["val"].fake_mode.shape_env for n in ours.graph.nodes if n.op == "placeholder")
    where = {r.lower.framework_loc for r in shape_env.var_to_range_sloc.values()}
    assert where == {f"{tmp_path / 'm.pt2'} (read from the archive)"}, where


@pytest.mark.parametrize(("low", "batches"), [(1, [2, 1]), (2, [2, 3])])
def test_verification_batches_follow_the_programs_batch_range(tmp_path: Path, low: int, batches: list[int]) -> None:
    """The second verification set is batch 1 (the deployment case) unless the program's own batch range starts
    higher: an export with ``Dim("batch", min=2)`` was not made for batch 1, so it is verified at 2 and 3."""
    import torch

    from converter.conversion.job import ConvertOptions
    from converter.conversion.torch_source import sample_inputs
    from converter.formats import Format, load_torch_source

    batch = torch.export.Dim("batch", min=low, max=64)
    program = torch.export.export(torch.nn.Linear(4, 3).eval(), (torch.randn(2, 4),), dynamic_shapes=({0: batch},))
    path = tmp_path / "linear.pt2"
    torch.export.save(program, str(path))
    src = load_torch_source(str(path), Format.EXPORTED_PROGRAM)
    assert src.batch_min == low
    _, sets, dynamic = sample_inputs(src, Format.EXPORTED_PROGRAM, ConvertOptions(output=str(tmp_path / "o.keras")))
    assert dynamic and [s.arrays[0].shape[0] for s in sets] == batches
