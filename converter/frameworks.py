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


_DLOPEN_FLAGS_MODULE = "tensorflow.python.pywrap_dlopen_global_flags"


class _TritonBeforeTensorFlow:
    """Import hook: the first ``import tensorflow`` imports triton first (see ``guard_triton_clash``)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name != "tensorflow":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]  # once
        if "triton" not in sys.modules:
            import importlib.util  # noqa: PLC0415

            if importlib.util.find_spec("triton") is not None:
                try:
                    import triton  # noqa: F401, PLC0415
                except Exception:  # noqa: BLE001 - a broken triton only costs torch its GPU kernels
                    sys.modules["triton"] = None  # type: ignore[assignment]
        return None  # the normal finders import TensorFlow


def guard_triton_clash() -> None:
    """Keep ``import triton`` from segfaulting after TensorFlow >= 2.20 (tensorflow/tensorflow#124205).

    The PyPI wheels since 2.20 load TF's C++ core with RTLD_GLOBAL, which puts its statically linked LLVM into the
    global symbol table; triton (a dependency of torch on Linux, imported by ``torch._dynamo``, i.e. by
    ``torch.export`` and ``torch.onnx.export``), loaded later, binds to it and crashes in its initializers. Loaded
    *before* TensorFlow, triton is fine -- and TF keeps RTLD_GLOBAL, which its Python TFLite interpreter needs to
    find the Flex (Select TF ops) delegate. So an import hook imports triton (~0.2 s) right before TensorFlow. If
    TensorFlow was already imported with the flag and triton was not, triton is made unimportable instead: torch
    takes its no-triton path (CPU), where the alternative is a segfault.
    """
    if "tensorflow" not in sys.modules:
        if not any(isinstance(f, _TritonBeforeTensorFlow) for f in sys.meta_path):
            sys.meta_path.insert(0, _TritonBeforeTensorFlow())
    elif "triton" not in sys.modules and _DLOPEN_FLAGS_MODULE in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]


def torch_on_cpu_only() -> None:
    """In a process that will run PyTorch only on the CPU (the conversion's forked worker), make triton unimportable
    before torch does import it: ``torch._dynamo`` -- which the ``.pt2`` reader and the ONNX exporter import --
    imports triton, a GPU kernel compiler, for 0.1-0.2 s of a 1.1-1.4 s import (``python -X importtime``, torch
    2.14). torch then takes its no-triton path, as on a machine without it; CPU kernels are the same. Nothing
    changes where triton or torch's compiler stack is already imported."""
    if "triton" not in sys.modules and "torch._dynamo" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]


def prepare_process() -> None:
    """Process-wide settings that crossport's promises need, made when ``converter`` is imported (cheap, no imports).

    - onnxruntime >= 1.2x on Linux ships 1DS telemetry that writes a device id and an event store under
      ``~/.cache/Microsoft/DeveloperTools`` and a ``.ses`` file in the temp dir on the first session, and would send
      them: we write only the output, and nothing leaves the machine. ``ORT_DISABLE_TELEMETRY=1`` (read when the
      first session is created) turns it off, unless the user set the variable themselves.
    - TensorFlow's RTLD_GLOBAL load that makes ``import triton`` segfault (``guard_triton_clash``).
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    guard_triton_clash()


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
    from converter.memory import importing_frameworks

    with silenced_stderr(always=True), importing_frameworks():
        import tensorflow as tf  # noqa: PLC0415

        tf.get_logger().setLevel("ERROR")
        import absl.logging  # noqa: PLC0415

        absl.logging.set_verbosity(absl.logging.ERROR)
    from converter.memory import settle_imports

    settle_imports()
    return tf


def keras() -> Any:
    tensorflow()
    fresh = "keras" not in sys.modules
    from converter.memory import importing_frameworks

    with importing_frameworks() if fresh else contextlib.nullcontext():
        import keras as k  # noqa: PLC0415

    if k.backend.backend() != "tensorflow":
        from converter.errors import CrossportError

        raise CrossportError(
            f"KERAS_BACKEND is {k.backend.backend()!r}; crossport's TensorFlow routes need KERAS_BACKEND=tensorflow"
        )
    if fresh:  # only right after an import: what exists then is the framework, not a conversion's garbage
        from converter.memory import settle_imports

        settle_imports()
    return k


def torch() -> Any:
    _env()
    import torch as t  # noqa: PLC0415

    return t


def tflite_interpreter(model_path: str, num_threads: int | None = None) -> Any:
    """A TFLite interpreter: LiteRT's (``ai_edge_litert``), the runtime a deployed ``.tflite`` meets.

    ``tf.lite.Interpreter`` is deprecated since TF 2.21 in favour of LiteRT. LiteRT has no Select TF (Flex) ops,
    so a file that needs them is opened with TensorFlow's interpreter, which links the Flex delegate, with its
    deprecation warning kept off the user's terminal."""
    kwargs = {} if num_threads is None else {"num_threads": num_threads}
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
    except ImportError:
        Interpreter = None  # noqa: N806
    if Interpreter is not None:
        interp = Interpreter(model_path=model_path, **kwargs)
        if not any(str(op.get("op_name", "")).startswith("Flex") for op in interp._get_ops_details()):
            return interp
    tf = tensorflow()
    import warnings  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return tf.lite.Interpreter(model_path=model_path, **kwargs)
