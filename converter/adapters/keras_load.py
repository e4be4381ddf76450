"""The one way crossport opens a Keras file (``convert``, ``verify``, and anything else that loads one).

``keras.models.load_model(safe_mode=True)`` for ``.keras`` and ``.h5`` alike unless the user passed ``TRUST_FLAG``:
a Lambda layer is Python code, and loading a model is not a licence to run it. Keras reports a refused Lambda as a
``ValueError`` that mentions ``safe_mode``; every other failure of a bad file is one ``ModelFileError`` line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from converter.errors import CrossportError, ModelFileError, UnsafeLoadError

TRUST_FLAG = "--trust-code"


def load_keras(path: str | Path, trust_code: bool, custom_objects: dict[str, Any] | None = None,
               keras_module: Any = None) -> Any:
    """The Keras model in ``path`` (not compiled), loaded with ``safe_mode`` unless ``trust_code``.
    ``keras_module``: an already imported ``keras`` (a torch-backend worker); default: TensorFlow's, quietly."""
    if keras_module is None:
        from converter.frameworks import keras

        keras_module = keras()
    k = keras_module
    try:
        return k.models.load_model(str(path), custom_objects=custom_objects, compile=False,
                                   safe_mode=not trust_code)
    except CrossportError:
        raise
    except ValueError as err:
        text = str(err)
        if "safe_mode" in text or "lambda" in text.lower():
            raise UnsafeLoadError(f"{path}: contains Python code (e.g. a Lambda layer); loading it would run that "
                                  f"code. Pass {TRUST_FLAG} if you trust this file") from err
        raise ModelFileError(f"{path}: not a loadable Keras model ({_line(text)})") from err
    except Exception as err:  # noqa: BLE001 - zip/h5py/keras raise many kinds for a bad file
        raise ModelFileError(f"{path}: not a loadable Keras model ({_line(str(err)) or type(err).__name__})") from err


def _line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[0][:200] if lines else ""
