"""keras.random.normal / uniform (also tf.random.*, keras.backend.random_normal) -> torch.randn / torch.rand, and
keras.random.SeedGenerator(s) -> torch.Generator().manual_seed(s).

A VAE's Sampling layer draws its noise from a seed generator it owns; the torch module does the same with a
``torch.Generator``, so each call draws fresh noise, reproducibly from the same seed. ``--verify`` compares only the
outputs that do not depend on the noise (it finds them by running the original twice).
"""
from __future__ import annotations

import libcst as cst

from rules.base import Example
from rules.cst_tools import code, expr, literal
from rules.keras_to_torch._base import KerasCallRule, keras_src

_NORMAL = ("keras.random.normal", "tensorflow.random.normal", "keras.backend.random_normal")
_UNIFORM = ("keras.random.uniform", "tensorflow.random.uniform", "keras.backend.random_uniform")


class RandomNoiseRule(KerasCallRule):
    id = "random-noise"
    description = ("keras.random.normal(shape, mean, stddev, seed=gen) / uniform(shape, minval, maxval) -> "
                   "torch.randn/rand(shape, generator=gen) * stddev + mean; keras.random.SeedGenerator(s) -> "
                   "torch.Generator().manual_seed(s)")
    NEEDS = ("torch",)
    TARGETS = {**{n: "normal" for n in _NORMAL}, **{n: "uniform" for n in _UNIFORM},
               "keras.random.SeedGenerator": "generator"}
    EXAMPLES = (
        Example(keras_src(("self.seed_generator = keras.random.SeedGenerator(7)",),
                          ("eps = keras.random.normal(shape=(2, 3), seed=self.seed_generator)", "return x + eps")),
                keras_src(("self.seed_generator = torch.Generator().manual_seed(7)",),
                          ("eps = torch.randn((2, 3), generator=self.seed_generator)", "return x + eps"),
                          head="import torch\n", torch=True)),
    )

    def generator(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        seed = node.args[0].value if node.args else None
        if seed is None or isinstance(seed, cst.Name) and seed.value == "None":
            return expr("torch.Generator()")
        return expr(f"torch.Generator().manual_seed({code(seed)})")

    def _common(self, node: cst.Call, params: list[str]) -> tuple[dict[str, cst.BaseExpression], str] | None:
        seed = next((x.value for x in node.args if x.keyword is not None and x.keyword.value == "seed"), None)
        kept = [x for x in node.args if not (x.keyword and x.keyword.value in ("dtype", "seed"))]
        a = self.bind(node.with_changes(args=kept), params)
        seed = a.get("seed", seed)  # positional, or the keyword ``bind`` leaves out with the initializer seeds
        if "shape" not in a:
            self.todo("a random draw without a shape")
            return None
        if seed is None or literal(seed, "?") is None:
            gen = ""
        elif isinstance(literal(seed, None), int):
            gen = f", generator=torch.Generator().manual_seed({code(seed)})"
        else:
            gen = f", generator={code(seed)}"
        return a, gen

    def normal(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        found = self._common(node, ["shape", "mean", "stddev", "seed"])
        if found is None:
            return None
        a, gen = found
        text = f"torch.randn({code(a['shape'])}{gen})"
        if "stddev" in a and literal(a["stddev"], None) != 1.0:
            text = f"{text} * {code(a['stddev'])}"
        if "mean" in a and literal(a["mean"], None) != 0.0:
            text = f"{text} + {code(a['mean'])}"
        return expr(text)

    def uniform(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        found = self._common(node, ["shape", "minval", "maxval", "seed"])
        if found is None:
            return None
        a, gen = found
        low = code(a["minval"]) if "minval" in a else "0.0"
        high = code(a["maxval"]) if "maxval" in a else "1.0"
        text = f"torch.rand({code(a['shape'])}{gen})"
        if (low, high) != ("0.0", "1.0"):
            text = f"{low} + ({high} - {low}) * {text}"
        return expr(text)
