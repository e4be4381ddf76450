"""Model spellings for the libraries people take architectures from, built offline with random weights.

``timm:NAME`` is ``timm.create_model(NAME, pretrained=False, **kwargs)``; ``transformers:Class`` builds a Hugging
Face class from a config -- ``{"config": {...}}`` (the config class's keyword arguments; ``model_type`` is
required for ``Auto*`` classes) or ``{"config": "path/to/dir"}`` (a local directory with ``config.json``). Nothing
is downloaded: a name that would need the Hub is an error that says so. Weights come from the user's checkpoint
(``crossport convert weights.safetensors --model-class transformers:BertModel --model-kwargs ...``) or stay the
library's random initialization (for a factory source).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from converter.errors import ModelClassError, first_line

LIBRARIES = ("timm", "transformers")


def is_library_spec(spec: str) -> bool:
    return spec.split(":", 1)[0] in LIBRARIES and ":" in spec


def _import(library: str) -> Any:
    import importlib

    try:
        return importlib.import_module(library)
    except ImportError as err:
        raise ModelClassError(f"{library}: not installed; pip install {library} to build {library}:... "
                              "models") from err


def build_library_model(spec: str, kwargs: dict[str, Any]) -> Any:
    """An ``nn.Module`` from ``timm:NAME`` or ``transformers:Class`` (random weights, no download)."""
    library, _, name = spec.partition(":")
    if not name:
        raise ModelClassError(f"{spec!r}: name the model after the colon, e.g. timm:resnet50 or "
                              "transformers:BertModel")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network, whatever the config says
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    module = _import(library)
    if library == "timm":
        if not module.is_model(name):
            close = module.list_models(f"*{name.split('.')[0][:6]}*")[:5]
            raise ModelClassError(f"{spec}: timm has no model {name!r}" + (f" (close: {', '.join(close)})"
                                                                              if close else ""))
        try:
            return module.create_model(name, pretrained=False, **kwargs)
        except Exception as err:  # noqa: BLE001 - the library validates kwargs its own way
            raise ModelClassError(f"{spec}: timm.create_model raised {type(err).__name__}: "
                                  f"{first_line(err)}") from err
    return _transformers_model(module, spec, name, dict(kwargs))


def _transformers_model(transformers: Any, spec: str, name: str, kwargs: dict[str, Any]) -> Any:
    cls = getattr(transformers, name, None)
    if cls is None or not isinstance(cls, type):
        raise ModelClassError(f"{spec}: transformers has no class {name!r}")
    config = kwargs.pop("config", None)
    if config is None:
        raise ModelClassError(f"{spec}: needs a config: --model-kwargs '{{\"config\": {{...}}}}' (the config "
                              "class's arguments) or '{\"config\": \"path/to/dir\"}' (a directory with config.json)")
    auto = name.startswith("Auto")
    try:
        if isinstance(config, str):
            directory = Path(config)
            if not (directory / "config.json").is_file():
                raise ModelClassError(f"{spec}: config {config!r} is not a local directory with a config.json "
                                      "(crossport never downloads; pass the directory or the config as a dict)")
            config_obj = (transformers.AutoConfig if auto else cls.config_class).from_pretrained(
                str(directory), local_files_only=True)
        elif isinstance(config, dict):
            if auto:
                if "model_type" not in config:
                    raise ModelClassError(f"{spec}: an Auto class needs \"model_type\" in the config dict")
                params = dict(config)
                config_obj = transformers.AutoConfig.for_model(params.pop("model_type"), **params)
            else:
                config_obj = cls.config_class(**config)
        else:
            raise ModelClassError(f"{spec}: \"config\" must be a dict or a directory path, not "
                                  f"{type(config).__name__}")
        return cls.from_config(config_obj, **kwargs) if auto else cls(config_obj, **kwargs)
    except ModelClassError:
        raise
    except Exception as err:  # noqa: BLE001 - the library validates configs its own way
        raise ModelClassError(f"{spec}: building it from the config raised {type(err).__name__}: "
                              f"{first_line(err)}") from err
