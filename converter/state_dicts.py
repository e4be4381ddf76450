"""Weights as people save them: find the state_dict inside a checkpoint, read safetensors (sharded too), and fit the
keys to the model class -- or say exactly why they do not fit.

Users rarely bring a bare ``model.state_dict()``. The PyTorch tutorials save ``{"epoch", "model_state_dict",
"optimizer_state_dict"}``; Lightning saves ``{"state_dict": ...}`` with a ``model.`` prefix; timm and DeiT save
``model`` / ``state_dict_ema``; DataParallel/DDP prefix every key with ``module.``, ``torch.compile`` with
``_orig_mod.``; Hugging Face publishes ``model.safetensors`` (sharded with an ``.index.json``) or
``pytorch_model.bin``. Every path here reads tensors only: safetensors has no code in it, and ``.pt``/``.bin`` go
through ``torch.load(weights_only=True)`` (the caller's loader) unless the user passed ``--trust-pickle``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from converter.errors import ModelClassError, ModelFileError, first_line

#: Keys under which checkpoints keep the model's weights, most specific first. EMA weights come last: a checkpoint
#: with both keeps the trained model under the plain key, and the user picks the average with --weights-key.
WEIGHT_KEYS = ("state_dict", "model_state_dict", "model", "net", "network", "module", "params", "weights",
               "model_ema", "ema", "state_dict_ema", "ema_state_dict", "model_ema_state_dict")
#: Prefixes wrappers add to every key: DataParallel/DDP, torch.compile, Lightning's LightningModule attribute,
#: timm's ModelEmaV2 (``module.``), keras-style ``model.``.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.", "net.", "ema.", "base_model.")
_MAX_DEPTH = 3


@dataclass(frozen=True)
class FoundWeights:
    """The state_dict found in a checkpoint, and where (``""`` = the file itself is one)."""

    state: dict[str, Any]
    where: str
    others: tuple[str, ...] = ()  # other places in the checkpoint that also hold a state_dict

    def describe(self) -> str:
        return f"the state_dict under {self.where!r}" if self.where else "the state_dict"


def _is_state_dict(obj: Any) -> bool:
    import torch

    return (isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(k, str) for k in obj)
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _candidates(obj: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Mapping[str, Any]]]:
    """Every (dotted key, state_dict) inside nested dicts, outermost first."""
    if _is_state_dict(obj):
        return [(prefix, obj)]
    if not isinstance(obj, Mapping) or depth >= _MAX_DEPTH:
        return []
    found: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in obj.items():
        if isinstance(key, str) and not key.startswith("optimizer") and key not in ("optim", "scheduler",
                                                                                   "lr_scheduler", "scaler"):
            found.extend(_candidates(value, f"{prefix}.{key}" if prefix else key, depth + 1))
    return found


def _describe_top(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = [str(k) for k in list(obj)[:8]]
        return f"a dict with keys {keys}{' ...' if len(obj) > 8 else ''}"
    return f"a {type(obj).__name__}"


def find_state_dict(obj: Any, path: Path, weights_key: str | None = None) -> FoundWeights:
    """The state_dict inside a loaded checkpoint: under ``weights_key`` (dotted for nesting) when given, else the
    object itself, else the first of ``WEIGHT_KEYS`` that holds one, else the only one there is."""
    if weights_key:
        node = obj
        for i, part in enumerate(weights_key.split(".")):
            if not isinstance(node, Mapping) or part not in node:
                here = ".".join(weights_key.split(".")[:i]) or "the checkpoint"
                raise ModelFileError(f"{path}: --weights-key {weights_key!r}: {here} has no key {part!r} "
                                     f"({_describe_top(node)})")
            node = node[part]
        inner = _candidates(node, weights_key)
        if not inner:
            raise ModelFileError(f"{path}: --weights-key {weights_key!r} holds {_describe_top(node)}, not a "
                                 "state_dict (a mapping of names to tensors)")
        if len(inner) > 1 and inner[0][0] != weights_key:
            raise ModelFileError(f"{path}: --weights-key {weights_key!r} holds several state_dicts "
                                 f"({', '.join(k for k, _ in inner)}); name one of them")
        return FoundWeights(dict(inner[0][1]), inner[0][0])
    found = _candidates(obj)
    if not found:
        raise ModelFileError(f"{path}: no weights found: it holds {_describe_top(obj)} and none of it is a state_dict "
                             "(a mapping of names to tensors); pass --weights-key KEY if they are under another name")
    if found[0][0] == "":
        return FoundWeights(dict(found[0][1]), "")
    where = [k for k, _ in found]
    for key in WEIGHT_KEYS:
        for dotted, state in found:
            if dotted == key or dotted.endswith(f".{key}") and dotted.split(".")[0] in WEIGHT_KEYS:
                return FoundWeights(dict(state), dotted, tuple(w for w in where if w != dotted))
    if len(found) == 1:
        return FoundWeights(dict(found[0][1]), found[0][0])
    raise ModelFileError(f"{path}: holds several state_dicts ({', '.join(where[:6])}) and none under a usual name; "
                         f"pass --weights-key, e.g. --weights-key {where[0]}")


# ---- files that are state_dicts by construction --------------------------------------------------------------


def is_shard_index(path: Path) -> bool:
    return path.name.endswith(".index.json")


def read_safetensors(path: Path) -> dict[str, Any]:
    """A ``.safetensors`` file, onto the CPU (no pickle, nothing to trust)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelFileError(f"{path}: not a readable safetensors file ({first_line(err)})") from err


def read_sharded(index: Path, read_shard: Callable[[Path], Any]) -> dict[str, Any]:
    """A sharded checkpoint from its ``*.index.json`` (``{"weight_map": {key: shard file}}``), every shard read with
    ``read_shard`` and checked to hold the keys the index promises."""
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelFileError(f"{index}: not a shard index (a JSON object with a 'weight_map' of key -> file: "
                             f"{type(err).__name__}: {err})") from err
    state: dict[str, Any] = {}
    for name in shards:
        shard = index.parent / name
        if not shard.is_file():
            raise ModelFileError(f"{index}: names shard {name!r}, which is not in {index.parent}")
        part = read_shard(shard)
        if not _is_state_dict(part):
            raise ModelFileError(f"{shard}: a shard of {index.name} that is not a state_dict")
        state.update(part)
    missing = [k for k in weight_map if k not in state]
    if missing:
        raise ModelFileError(f"{index}: {len(missing)} keys of the index are in none of its shards, e.g. "
                             f"{missing[:3]}")
    return state


# ---- fitting a state_dict to the model -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    """How a state_dict's keys line up with a module's, after renaming with ``strip``/``add``."""

    strip: str
    add: str
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    shape_mismatches: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]  # (key, checkpoint, model)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)

    @property
    def score(self) -> int:
        return -(len(self.missing) + len(self.unexpected) + len(self.shape_mismatches))

    def rename(self, key: str) -> str:
        return self.add + key[len(self.strip):] if self.strip and key.startswith(self.strip) else self.add + key


def _fit(state: Mapping[str, Any], expected: Mapping[str, Any], strip: str, add: str) -> Fit:
    renamed = {(add + k[len(strip):] if strip and k.startswith(strip) else add + k): v for k, v in state.items()}
    # Old checkpoints lack BatchNorm's num_batches_tracked counter (added in torch 0.4.1); it never affects outputs.
    missing = tuple(k for k in expected if k not in renamed and not k.endswith("num_batches_tracked"))
    unexpected = tuple(k for k in renamed if k not in expected)
    shapes = tuple((k, tuple(renamed[k].shape), tuple(expected[k].shape)) for k in expected
                   if k in renamed and tuple(renamed[k].shape) != tuple(expected[k].shape))
    return Fit(strip, add, missing, unexpected, shapes)


def _prefixes(keys: list[str]) -> set[str]:
    """Leading components every key shares (``module.``, ``module._orig_mod.``): candidates to strip."""
    out = {""}
    for depth in (1, 2):
        heads = {".".join(k.split(".")[:depth]) + "." for k in keys if k.count(".") >= depth}
        if len(heads) == 1 and all(k.startswith(next(iter(heads))) for k in keys):
            out.add(next(iter(heads)))
    out.update(p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in keys))
    return out


def best_fit(state: Mapping[str, Any], module: Any) -> Fit:
    """The renaming (strip a wrapper prefix, or add the model's own prefix) under which the most keys fit."""
    expected = module.state_dict()
    strips = _prefixes(list(state))
    adds = {""} | {p for p in _prefixes(list(expected)) if p}
    base = getattr(module, "base_model_prefix", "")  # Hugging Face: BertForX keeps BertModel under "bert."
    if isinstance(base, str) and base:
        adds.add(base + ".")
        strips.add(base + ".")
    fits = [_fit(state, expected, s, a) for s in sorted(strips) for a in sorted(adds) if not (s and a and s == a)]
    return max(fits, key=lambda f: (f.exact, f.score, -len(f.strip) - len(f.add)))


def strip_wrapper_prefixes(state: Mapping[str, Any]) -> dict[str, Any]:
    """Without a module to fit against: drop ``module.`` / ``_orig_mod.`` while every key carries one."""
    out = dict(state)
    while out and (head := next((p for p in ("module.", "_orig_mod.") if all(k.startswith(p) for k in out)), None)):
        out = {k[len(head):]: v for k, v in out.items()}
    return out


def _shape(dims: tuple[int, ...]) -> str:
    return "x".join(map(str, dims)) or "scalar"


def load_into(module: Any, found: FoundWeights, path: Path, model_class: str) -> tuple[str, ...]:
    """Load ``found`` into ``module`` (renamed as fits best) or raise one line naming the closest mismatches.
    Returns notes for the report: where the weights came from and any renaming."""
    import torch

    fit = best_fit(found.state, module)
    if not fit.exact:
        parts = []
        if fit.missing:
            parts.append(f"{len(fit.missing)} missing in the checkpoint ({', '.join(fit.missing[:4])}"
                         f"{', ...' if len(fit.missing) > 4 else ''})")
        if fit.unexpected:
            parts.append(f"{len(fit.unexpected)} not in the model ({', '.join(fit.unexpected[:4])}"
                         f"{', ...' if len(fit.unexpected) > 4 else ''})")
        if fit.shape_mismatches:
            parts.append(f"{len(fit.shape_mismatches)} of another shape (" + ", ".join(
                f"{k}: checkpoint {_shape(a)}, model {_shape(b)}" for k, a, b in fit.shape_mismatches[:3])
                + (", ..." if len(fit.shape_mismatches) > 3 else "") + ")")
        renamed = (f" after stripping {fit.strip!r}" if fit.strip else "") + (f" after adding {fit.add!r}"
                                                                                if fit.add else "")
        raise ModelClassError(f"{path}: {found.describe()} does not fit {model_class}{renamed}: " + "; ".join(parts))
    state = {fit.rename(k): v for k, v in found.state.items()}
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in state.values() if v.is_floating_point()})
    with torch.no_grad():
        module.load_state_dict(state, strict=False)
    notes = [f"weights: {found.describe()} ({len(state)} tensors)"]
    if found.others:
        notes.append(f"the checkpoint also holds {', '.join(found.others[:3])}; --weights-key picks another")
    if fit.strip:
        notes.append(f"stripped the {fit.strip!r} prefix from every key (a wrapper such as DataParallel, DDP or "
                     "torch.compile saved it)")
    if fit.add:
        notes.append(f"added the {fit.add!r} prefix to every key to fit {model_class}")
    if any(d in ("float16", "bfloat16") for d in dtypes):
        notes.append(f"weights stored as {'/'.join(dtypes)}, loaded into the model's float32 parameters")
    return tuple(notes)
