"""layers.MaxPooling1D/2D, AveragePooling1D/2D -> nn.MaxPool{n}d / nn.AvgPool{n}d with exact padding.

Keras 'same' ignores padded cells: for max pooling that is torch's -inf padding, for average pooling torch's
``count_include_pad=False``; asymmetric max-pool padding becomes ``nn.ConstantPad2d(..., float("-inf"))``.
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import arg, call, lit, literal, pad_pair, tuple_of, expr
from rules.keras_to_torch._base import KerasCallRule, keras_src, padding_value, same_padding

_PARAMS = ["pool_size", "strides", "padding", "data_format"]


class PoolingRule(KerasCallRule):
    id = "pooling"
    description = ("layers.MaxPooling1D/2D and AveragePooling1D/2D -> nn.MaxPool{n}d / nn.AvgPool{n}d; 'same' "
                   "becomes exact padding (-inf for max, count_include_pad=False for average)")
    TARGETS = {
        **{f"keras.layers.MaxPooling{n}D": "pool" for n in (1, 2, 3)},
        **{f"keras.layers.AveragePooling{n}D": "pool" for n in (1, 2, 3)},
        **{f"keras.layers.MaxPool{n}D": "pool" for n in (1, 2, 3)},
        **{f"keras.layers.AvgPool{n}D": "pool" for n in (1, 2, 3)},
    }
    EXAMPLES = (
        Example(keras_src(("self.pool = layers.MaxPooling2D()",)), keras_src(("self.pool = nn.MaxPool2d(2)",), torch=True)),
        Example(keras_src(("self.pool = layers.AveragePooling2D(pool_size=3, strides=1, padding='same')",)),
                keras_src(("self.pool = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)",), torch=True)),
        Example(keras_src(("self.pool = layers.MaxPooling2D((2, 2), padding='same')",)),
                keras_src(("self.pool = nn.MaxPool2d((2, 2), ceil_mode=True)",), torch=True)),
        Example(keras_src(("self.pool = layers.MaxPooling1D(2, strides=1)",)),
                keras_src(("self.pool = nn.MaxPool1d(2, stride=1)",), torch=True)),
    )

    def pool(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        short = name.rsplit(".", 1)[-1]
        dims = int(short[-2])
        is_max = short.startswith("Max")
        a = self.bind(node, _PARAMS)
        size = a.get("pool_size", lit(2))
        k = pad_pair(literal(size, None), dims)
        strides = a.get("strides")
        stride_value = literal(strides, None) if strides is not None else None
        s = k if stride_value is None else pad_pair(stride_value, dims)
        args = [arg(size)]
        if stride_value is not None and s != k:
            args.append(arg(strides, "stride"))  # type: ignore[arg-type]
        mode = literal(a.get("padding"), "?") if "padding" in a else "valid"
        pad_module = None
        if mode == "same":
            if k is None or s is None:
                self.todo("padding='same' with non-literal pool size/stride")
                return None
            shape = self.input_shape()
            sizes = list(shape[1:1 + dims]) if shape and len(shape) == dims + 2 else [None] * dims
            pads = [same_padding(n, ki, si) for n, ki, si in zip(sizes, k, s)]
            if any(p is None for p in pads) and k == s:
                # stride == pool size: Keras pads the end only, and only what the last window needs; torch's
                # ceil_mode window stops at the edge too (max and mean over the cells inside): exact for any size.
                args.append(arg(cst.Name("True"), "ceil_mode"))
                pads = [(0, 0)] * dims
            elif any(p is None for p in pads):
                self.todo("padding='same' with stride > 1 pads by the input size; symmetric padding assumed (exact "
                          "only for some input sizes): pass --input-shape")
                pads = [((ki - 1) // 2, (ki - 1) // 2) for ki in k]
            if all(b == e for b, e in pads):  # type: ignore[misc]
                values = [b for b, _ in pads]  # type: ignore[misc]
                if any(values):
                    args.append(arg(lit(padding_value(values)), "padding"))
            elif is_max:
                flat = [v for pair in reversed(pads) for v in pair]  # type: ignore[union-attr]
                pad_module = call(f"nn.ConstantPad{dims}d", arg(tuple_of([lit(v) for v in flat])),
                                  arg(expr('float("-inf")')))
            else:
                self.todo("AveragePooling 'same' pads asymmetrically here; torch pads both sides equally")
                return None
            if not is_max and any(b for b, _ in pads):  # type: ignore[misc]
                args.append(arg(cst.Name("False"), "count_include_pad"))
        elif mode != "valid":
            self.todo(f"padding={mode!r}")
            return None
        layer = call(f"nn.{'MaxPool' if is_max else 'AvgPool'}{dims}d", *args)
        return layer if pad_module is None else call("nn.Sequential", arg(pad_module), arg(layer))
