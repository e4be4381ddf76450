"""Keras ``*_initializer=`` arguments -> ``nn.init.*_`` calls on the torch layer's parameters.

A rewritten model that is trained from scratch should start from the same distribution as the Keras original, not
from torch's defaults. The layer expression becomes ``nn.Linear(...).apply(lambda m: nn.init.X_(m.weight, ...))``:
``Module.apply`` returns the module, so this works wherever a layer is built (an attribute, a Sequential entry, a
functional builder). The fans agree (Keras kernels are the transposes of torch weights), so ``he_normal`` is
``kaiming_normal_`` with the same standard deviation. A lazy module (no ``--input-shape``) has no weights before its
first call: it is marked.
"""
from __future__ import annotations

from typing import Callable

import libcst as cst

from rules.cst_tools import code, expr, literal

#: torch layer class -> Keras initializer keyword -> the torch parameter it initializes.
_KERNEL = {"kernel_initializer": "weight", "bias_initializer": "bias"}
_NORM = {"gamma_initializer": "weight", "beta_initializer": "bias", "moving_mean_initializer": "running_mean",
         "moving_variance_initializer": "running_var"}
TARGET_PARAMS: dict[str, dict[str, str]] = {
    **{f"nn.{c}": _KERNEL for c in ("Linear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                                       "ConvTranspose3d")},
    **{f"nn.{c}": _NORM for c in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LayerNorm")},
    "nn.Embedding": {"embeddings_initializer": "weight"},
    **{f"nn.{c}": {"kernel_initializer": "weight_ih_l0", "recurrent_initializer": "weight_hh_l0",
                   "bias_initializer": "bias_ih_l0"} for c in ("LSTM", "GRU", "RNN")},
}
INITIALIZER_KWARGS = frozenset(k for params in TARGET_PARAMS.values() for k in params)
#: Initializers that need fans: torch computes them only for tensors of rank >= 2.
_FAN_BASED = frozenset({"glorotuniform", "glorotnormal", "henormal", "heuniform", "lecunnormal", "lecununiform",
                        "orthogonal"})
#: Keras positional parameters of the initializer classes that take arguments (``seed`` is dropped).
_POSITIONAL = {"constant": ("value",), "randomnormal": ("mean", "stddev"), "randomuniform": ("minval", "maxval"),
               "truncatednormal": ("mean", "stddev"), "orthogonal": ("gain",)}


def _canonical(init: cst.BaseExpression, qualified_name: Callable[[cst.CSTNode], str | None]
               ) -> tuple[str, dict[str, object]] | None:
    """("henormal", {}) for ``"he_normal"``, ``HeNormal()``, ``initializers.he_normal(seed=1)``; None if unknown."""
    name = literal(init, None)
    if isinstance(name, str):
        return name.replace("_", "").lower(), {}
    target = init.func if isinstance(init, cst.Call) else init
    if not isinstance(target, (cst.Name, cst.Attribute)):
        return None
    q = qualified_name(target) or ""
    if not q.startswith(("keras.", "tensorflow.")):
        return None
    key = q.rsplit(".", 1)[-1].replace("_", "").lower()
    kw: dict[str, object] = {}
    if isinstance(init, cst.Call):
        names = _POSITIONAL.get(key, ())
        for i, a in enumerate(init.args):
            value = literal(a.value, None)
            k = a.keyword.value if a.keyword is not None else (names[i] if i < len(names) else "?")
            if k == "seed":
                continue
            if k not in names or not isinstance(value, (int, float)) or isinstance(value, bool):
                return None
            kw[k] = value
    return key, kw


def torch_init(init: cst.BaseExpression, tensor: str, qualified_name: Callable[[cst.CSTNode], str | None],
               rank: int) -> str | None:
    """The ``nn.init`` call drawing ``tensor`` like Keras initializer ``init``; None when there is none."""
    found = _canonical(init, qualified_name)
    if found is None:
        return None
    key, kw = found
    if key in _FAN_BASED and rank < 2:
        return None
    if key == "zeros":
        return f"nn.init.zeros_({tensor})"
    if key == "ones":
        return f"nn.init.ones_({tensor})"
    if key == "constant" and "value" in kw:
        return f"nn.init.constant_({tensor}, {kw['value']!r})"
    simple = {"glorotuniform": "xavier_uniform_({t})", "glorotnormal": "xavier_normal_({t})",
              "henormal": 'kaiming_normal_({t}, nonlinearity="relu")',
              "heuniform": 'kaiming_uniform_({t}, nonlinearity="relu")',
              "lecunnormal": 'kaiming_normal_({t}, nonlinearity="linear")',
              "lecununiform": 'kaiming_uniform_({t}, nonlinearity="linear")'}
    if key in simple and not kw:
        return "nn.init." + simple[key].format(t=tensor)
    if key == "orthogonal":
        gain = kw.get("gain", 1.0)
        return f"nn.init.orthogonal_({tensor})" if gain == 1 else f"nn.init.orthogonal_({tensor}, gain={gain!r})"
    if key == "randomnormal":
        return f"nn.init.normal_({tensor}, mean={kw.get('mean', 0.0)!r}, std={kw.get('stddev', 0.05)!r})"
    if key == "randomuniform":
        return f"nn.init.uniform_({tensor}, a={kw.get('minval', -0.05)!r}, b={kw.get('maxval', 0.05)!r})"
    if key == "truncatednormal":
        mean, std = float(kw.get("mean", 0.0)), float(kw.get("stddev", 0.05))  # type: ignore[arg-type]
        return (f"nn.init.trunc_normal_({tensor}, mean={mean!r}, std={std!r}, a={mean - 2 * std!r}, "
                f"b={mean + 2 * std!r})")
    return None


_MATRICES = frozenset({"weight", "weight_ih_l0", "weight_hh_l0"})


def _layer(result: cst.BaseExpression) -> tuple[cst.Call, str] | None:
    """The torch layer a rule built (inside ``nn.Sequential(pad, layer)`` / ``nn.Sequential(layer, act)``)."""
    if not isinstance(result, cst.Call):
        return None
    func = code(result.func)
    if func == "nn.Sequential":
        for a in result.args:
            found = _layer(a.value)
            if found is not None:
                return found
        return None
    return (result, func) if func in TARGET_PARAMS or func.startswith("nn.Lazy") else None


def with_initializers(original: cst.Call, result: cst.BaseExpression,
                      qualified_name: Callable[[cst.CSTNode], str | None],
                      todo: Callable[[str], None]) -> cst.BaseExpression:
    """``result`` with the original call's initializers applied to its torch layer (marked when not possible)."""
    given = [(a.keyword.value, a.value) for a in original.args
             if a.keyword is not None and a.keyword.value.endswith("_initializer")]
    if not given:
        return result
    found = _layer(result)
    if found is None:
        return result
    layer, func = found
    if func.startswith("nn.Lazy"):
        todo(f"{func} has no weights before its first call, so {', '.join(k for k, _ in given)} not applied; "
             "pass --input-shape to initialize it like Keras")
        return result
    params = TARGET_PARAMS[func]
    calls = []
    for key, value in given:
        tensor = params.get(key)
        rank = 2 if tensor in _MATRICES and params is not _NORM else 1
        made = None if tensor is None else torch_init(value, f"m.{tensor}", qualified_name, rank)
        if made is None:
            todo(f"{key}={code(value)} has no nn.init equivalent on {func}; torch's default initialization is used")
            continue
        calls.append(made)
    if not calls:
        return result
    body = calls[0] if len(calls) == 1 else "(" + ", ".join(calls) + ")"
    initialized = expr(f"{code(layer)}.apply(lambda m: {body})")
    return result.deep_replace(layer, initialized) if layer is not result else initialized  # type: ignore[return-value]
