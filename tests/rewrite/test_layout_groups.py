"""--to keras without --layout: the channels_first fallback is per group of classes that share tensors, not per
file (issue 13, item 2): in a GAN file only the discriminator, whose forward depends on the NCHW order, falls back."""
from __future__ import annotations

from pathlib import Path

from converter.rewrite import RewriteOptions, rewrite_source
from converter.rewrite.layout_groups import channels_first_defs, groups

GAN = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "gan_pair.py"


def test_classes_and_helpers_that_name_each_other_form_one_group() -> None:
    src = ("def block(c):\n    return c\n\n\nclass Stage:\n    def __init__(self):\n        self.b = block(1)\n\n\n"
           "class Net:\n    def __init__(self):\n        self.s = Stage()\n\n\nclass Other:\n    pass\n\n\n"
           "net = Net()\nother = Other()\n")  # module-level code naming both does not join them
    assert sorted(sorted(g) for g in groups(src)) == [["Net", "Stage", "block"], ["Other"]]


def test_a_todo_outside_every_def_falls_back_for_the_whole_file() -> None:
    src = "class A:\n    pass\n\n\nclass B:\n    pass\n"
    assert channels_first_defs(src, src, [2]) == {"A"}
    assert channels_first_defs(src, src, [4]) is None


def _gan():  # type: ignore[no-untyped-def]
    return rewrite_source(GAN.read_text(), RewriteOptions(layout_auto=True), filename=str(GAN))


def test_only_the_discriminator_group_falls_back() -> None:
    result = _gan()
    assert result.todos == ()
    assert result.layout == "channels_last"
    assert result.class_layouts == (("Discriminator", "channels_first"), ("disc_block", "channels_first"))
    assert result.layout_of("Generator") == "channels_last" and result.layout_of("Discriminator") == "channels_first"
    generator, discriminator = result.code.split("class Discriminator")
    assert "channels_first" not in generator.split("class Generator")[1]
    assert 'data_format="channels_first"' in generator.split("class Generator")[0]  # disc_block
    assert "keras.layers.BatchNormalization(axis=1" in generator and "axis=-1" in generator
    assert any("layout channels_first for Discriminator (the rest channels_last)" in n for n in result.notes)
    # rewriting again with the chosen layouts changes nothing
    again = rewrite_source(result.code, RewriteOptions(layout_auto=True))
    assert again.code == result.code


def test_both_models_verify_each_in_its_own_layout() -> None:
    from converter.rewrite.verify import VerifyOptions, format_report, verify_rewrite
    from converter.input_shapes import unnamed_shapes

    result = _gan()
    for cls, shape, layout in (("Generator", "2x16x1x1", "channels_last"), ("Discriminator", "2x3x8x8",
                                                                            "channels_first")):
        report = verify_rewrite(GAN, result, VerifyOptions(unnamed_shapes([shape]), class_name=cls))
        assert report.layout == layout
        assert report.passed and report.max_abs_error < 1e-5, format_report(report)
