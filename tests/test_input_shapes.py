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
