"""torch.randn_like / rand_like / randn / rand in forward code -> keras.random.normal / uniform with a SeedGenerator.

A model that samples noise (a VAE's reparameterization) draws it in Keras from ``keras.random`` with a
``keras.random.SeedGenerator`` the layer owns (``self.seed_generator``, created at the end of ``__init__``), so
every call draws fresh noise and the layer stays traceable. Outputs that depend on the noise differ between two
runs of either model; ``--verify`` detects them and compares the others.
"""
from __future__ import annotations

import libcst as cst

from rules.base import CallRule, Example, model_src
from rules.cst_tools import arg, bind_args, call, code, expr, tuple_of

SEED_ATTR = "seed_generator"


class RandomNoiseRule(CallRule):
    id = "random-noise"
    description = ("torch.randn_like(x) / rand_like / randn(*size) / rand(*size) in forward code -> keras.random.normal"
                   " / uniform(shape, seed=self.seed_generator); __init__ gains self.seed_generator = "
                   "keras.random.SeedGenerator(0)")
    TARGETS = {"torch.randn_like": "like", "torch.rand_like": "like", "torch.randn": "sized", "torch.rand": "sized"}
    SCOPE = "tensor"
    EXAMPLES = (
        Example(model_src(("self.fc = nn.Linear(2, 2)",), ("eps = torch.randn_like(x)", "return x + eps")),
                model_src(("self.fc = nn.Linear(2, 2)", "self.seed_generator = keras.random.SeedGenerator(0)"),
                          ("eps = keras.random.normal(keras.ops.shape(x), seed=self.seed_generator)", "return x + eps"),
                          keras=True)),
    )

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        super().__init__(ctx)
        self._needs_seed: set[str] = set()

    def _seed(self) -> list[cst.Arg]:
        info = self.ctx.current_class()
        if info is None:
            return []
        self._needs_seed.add(info.name)
        return [arg(expr(f"self.{SEED_ATTR}"), "seed")]

    def _draw(self, name: str, shape: cst.BaseExpression) -> cst.BaseExpression:
        fn = "keras.random.normal" if "randn" in name else "keras.random.uniform"
        return call(fn, arg(shape), *self._seed())

    def like(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        a = bind_args(node, ["input", "dtype", "layout", "device", "requires_grad", "memory_format"])
        if set(a) - {"input", "device", "requires_grad"}:
            self.todo(f"{name.rsplit('.', 1)[-1]}(dtype=...) is not translated")
            return None
        return self._draw(name, call("keras.ops.shape", arg(a["input"])))

    def sized(self, node: cst.Call, name: str) -> cst.BaseExpression | None:
        sizes = [a for a in node.args if a.keyword is None]
        if any(a.star for a in node.args) or any(
                a.keyword is not None and a.keyword.value not in ("device", "requires_grad") for a in node.args):
            self.todo(f"{name.rsplit('.', 1)[-1]}(...) with these arguments is not translated")
            return None
        if len(sizes) == 1 and isinstance(sizes[0].value, (cst.Tuple, cst.List)):
            shape: cst.BaseExpression = sizes[0].value
        elif len(sizes) == 1 and not isinstance(sizes[0].value, (cst.Integer, cst.BinaryOperation, cst.Subscript)):
            shape = sizes[0].value  # a shape held in a variable / x.shape
        else:
            shape = tuple_of([s.value for s in sizes])
        return self._draw(name, shape)

    def leave_ClassDef(self, original_node: cst.ClassDef, updated_node: cst.ClassDef) -> cst.ClassDef:
        if original_node.name.value not in self._needs_seed:
            return updated_node
        self._needs_seed.discard(original_node.name.value)
        body = list(updated_node.body.body)
        for i, stmt in enumerate(body):
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == "__init__":
                if f"self.{SEED_ATTR} =" in code(stmt):
                    return updated_node
                line = cst.parse_statement(f"self.{SEED_ATTR} = keras.random.SeedGenerator(0)\n")
                inner = list(stmt.body.body) + [line]
                body[i] = stmt.with_changes(body=stmt.body.with_changes(body=inner))
                return updated_node.with_changes(body=updated_node.body.with_changes(body=body))
        init = cst.parse_statement("def __init__(self, **kwargs):\n    super().__init__(**kwargs)\n"
                                   f"    self.{SEED_ATTR} = keras.random.SeedGenerator(0)\n")
        return updated_node.with_changes(body=updated_node.body.with_changes(body=[init, *body]))
