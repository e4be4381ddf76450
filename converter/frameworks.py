"""Import the heavy frameworks quietly and in one place.

TensorFlow and XLA print CUDA/cuDNN registration noise from C++ at import time, some of it through absl before
``TF_CPP_MIN_LOG_LEVEL`` is read. We set the variables and, unless the user asked for detail, point file
descriptor 2 at /dev/null for the duration of the import only (with ``-v`` too: that noise is never detail).
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator

_VERBOSE = False


def set_verbose(flag: bool) -> None:
    global _VERBOSE
    _VERBOSE = flag


def _env() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def quiet_frameworks() -> None:
    """Silence TensorFlow's C++ logging and oneDNN notices before TF is first imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    _private_keras_home()


def _private_keras_home() -> None:
    """Keras writes ``~/.keras/keras.json`` on first import when it is missing: a write outside the output path
    and the temp dir. Without a user config (or KERAS_HOME), point Keras at a private temp dir removed at exit; an
    existing user config is read as before (Keras writes nothing then)."""
    if "KERAS_HOME" in os.environ:
        return
    home = os.path.expanduser("~")
    if os.path.exists(os.path.join(home, ".keras", "keras.json")):
        return
    import atexit
    import shutil
    import tempfile

    keras_home = tempfile.mkdtemp(prefix="crossport-keras-home-")
    os.environ["KERAS_HOME"] = keras_home
    atexit.register(shutil.rmtree, keras_home, True)


@contextlib.contextmanager
def silenced_stderr(always: bool = False) -> Iterator[None]:
    """Redirect fd 2 (C/C++ logging) to /dev/null; Python-level stderr keeps working via a dup.

    ``always``: also under ``-v`` (TensorFlow's import-time CUDA registration lines carry no information)."""
    if _VERBOSE and not always:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        try:
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflow() -> Any:
    _env()
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with silenced_stderr(always=True):
        import tensorflow as tf  # noqa: PLC0415

        tf.get_logger().setLevel("ERROR")
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def keras() -> Any:
    tensorflow()
    import keras as k  # noqa: PLC0415

    if k.backend.backend() != "tensorflow":
        from converter.errors import CrossportError

        raise CrossportError(
            f"KERAS_BACKEND is {k.backend.backend()!r}; crossport's TensorFlow routes need KERAS_BACKEND=tensorflow"
        )
    return k


def torch() -> Any:
    _env()
    import torch as t  # noqa: PLC0415

    return t
