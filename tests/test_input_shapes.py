"""The one ``--input-shape`` grammar: one value is one input's shape, ``x`` or ``,`` between dims, ``name=`` optional."""
from __future__ import annotations

import pytest

from converter.errors import ShapeError
from converter.input_shapes import parse_input_shape, parse_input_shapes, unnamed_shapes


def test_one_value_is_one_shape() -> None:
    assert parse_input_shape("1x3x32x32") == (None, (1, 3, 32, 32))
    assert parse_input_shape("1,3,32,32") == (None, (1, 3, 32, 32))
    assert parse_input_shape("pixel_values=2x3x8x8") == ("pixel_values", (2, 3, 8, 8))
    assert parse_input_shapes(["a=1x4", "b=1x2x2"]) == (("a", (1, 4)), ("b", (1, 2, 2)))


@pytest.mark.parametrize("text", ["", "1x", "x3", "1x0x3", "1x-3", "name=", "3 x 4", "1X3"])
def test_malformed_values_are_shape_errors(text: str) -> None:
    with pytest.raises(ShapeError):
        parse_input_shape(text)


def test_positional_commands_refuse_names() -> None:
    assert unnamed_shapes(["1x3x8x8", "1x10"]) == ((1, 3, 8, 8), (1, 10))
    with pytest.raises(ShapeError, match="by position"):
        unnamed_shapes(["x=1x3"])


def test_int_range_grammar_is_shared_by_convert_and_verify() -> None:
    from converter.input_shapes import int_range_for, parse_int_range, parse_int_ranges

    assert parse_int_range("0:1000") == (None, (0, 1000))
    assert parse_int_range("0,1000") == (None, (0, 1000))
    assert parse_int_range("input_ids=3:7") == ("input_ids", (3, 7))
    ranges = parse_int_ranges(["input_ids=0:100", "0:5"])
    assert int_range_for("input_ids", ranges, (0, 30)) == (0, 100)  # a named range beats the model's bound
    assert int_range_for("mask", ranges, (0, 2)) == (0, 2)  # the model's bound beats the unnamed range
    assert int_range_for("other", ranges) == (0, 5)
    assert int_range_for("other", ()) == (0, 10)


@pytest.mark.parametrize("values", [["9:3"], ["a=1"], ["0:2", "0:3"], ["a=0:2", "a=0:3"], ["=0:3"]])
def test_bad_int_ranges_are_shape_errors(values: list[str]) -> None:
    from converter.input_shapes import parse_int_ranges

    with pytest.raises(ShapeError, match="--int-range"):
        parse_int_ranges(values)
