"""layers.ZeroPadding1D/2D -> nn.ZeroPad1d/2d; layers.UpSampling2D (nearest) -> nn.Upsample(scale_factor, 'nearest')."""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, lit, literal, tuple_of
from rules.keras_to_torch._base import KerasCallRule, keras_src


def _torch_pad(value: object, dims: int) -> tuple[int, ...] | None:
    """Keras padding spec (int, per-dim int, or per-dim (before, after)) -> torch's last-dim-first flat tuple."""
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,) * (2 * dims)
    if isinstance(value, tuple) and len(value) == dims:
        pairs = [(v, v) if isinstance(v, int) else tuple(v) for v in value]
        if all(len(p) == 2 and all(isinstance(x, int) for x in p) for p in pairs):
            return tuple(x for p in reversed(pairs) for x in p)
    if dims == 1 and isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return value  # type: ignore[return-value]
    return None


class ResamplingRule(KerasCallRule):
    id = "resampling"
    description = ("layers.ZeroPadding1D/2D -> nn.ZeroPad1d/2d (torch orders pads last dim first); "
                   "layers.UpSampling2D(size, interpolation='nearest') -> nn.Upsample(scale_factor=size, "
                   "mode='nearest')")
    TARGETS = {"keras.layers.ZeroPadding2D": "pad", "keras.layers.ZeroPadding1D": "pad",
               "keras.layers.UpSampling2D": "upsample", "keras.layers.UpSampling1D": "upsample"}
    EXAMPLES = (
        Example(keras_src(("self.pad = layers.ZeroPadding2D(((1, 0), (2, 0)))",)),
                keras_src(("self.pad = nn.ZeroPad2d((2, 0, 1, 0))",), torch=True)),
        Example(keras_src(("self.up = layers.UpSampling2D()",)),
                keras_src(('self.up = nn.Upsample(scale_factor=2, mode="nearest")',), torch=True)),
        Example(keras_src(("self.up = layers.UpSampling2D(2, interpolation='bilinear')",)),
                keras_src(("# crossport: TODO(resampling): UpSampling2D interpolation='bilinear': Keras and torch "
                           "resize with different pixel-centre conventions",
                           "self.up = layers.UpSampling2D(2, interpolation='bilinear')"))),
    )

    def pad(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        dims = int(name[-2])
        a = self.bind(node, ["padding", "data_format"])
        value = literal(a["padding"], None) if "padding" in a else 1
        pads = _torch_pad(value, dims)
        if pads is None:
            self.todo("non-literal padding")
            return None
        return call(f"nn.ZeroPad{dims}d", arg(tuple_of([lit(v) for v in pads]) if len(set(pads)) > 1 else lit(pads[0])))

    def upsample(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = self.bind(node, ["size", "data_format", "interpolation"])
        mode = literal(a.get("interpolation"), "?") if "interpolation" in a else "nearest"
        if mode != "nearest":
            self.todo(f"{name.rsplit('.', 1)[-1]} interpolation={mode!r}: Keras and torch resize with different "
                      "pixel-centre conventions")
            return None
        size = a.get("size", lit(2))
        value = literal(size, None)
        if isinstance(value, tuple) and len(set(value)) == 1:
            size = lit(value[0])
        return call("nn.Upsample", arg(size, "scale_factor"), arg("nearest", "mode"))
