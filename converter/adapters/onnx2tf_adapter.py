"""Adapter around onnx2tf (1.29.x) — the only module that imports it, and only inside functions.

onnx2tf turns an ONNX graph (NCHW) into a tf_keras model whose 4-D inputs are NHWC. Its ``convert()`` has ~90
parameters and, with default settings, always writes a SavedModel plus a float32 *and* a float16 ``.tflite``.
Which of its flags skip which work (read in the installed ``onnx2tf/onnx2tf.py``, 1.29.24):

- ``disable_model_save=True`` returns the built ``tf_keras.Model`` right after graph building and skips *every*
  write: the SavedModel (``tf.saved_model.save(model)``), the float32 TFLite and the float16 TFLite. There is no
  flag that skips only the TFLite files, nor one that skips only the SavedModel: the TFLite float32/float16
  conversions run unconditionally after the SavedModel write, each through
  ``TFLiteConverter.from_keras_model`` — which serializes the tf_keras model to a temporary SavedModel again.
  That is the "SavedModel saving done three times" measured in shared/reference/upstream.md (~95 % of a
  ResNet-18 conversion, in tf_keras' per-layer ``tracking_metadata``). So we always pass
  ``disable_model_save=True`` and write only the requested artifacts ourselves, from a traced concrete function
  held by a plain ``tf.Module`` (no Keras per-layer metadata): see :func:`save_saved_model`/:func:`save_tflite`.
- ``output_signaturedefs=True`` renames ONNX names that start with ``/`` to ``wa/...`` so that they are legal TF
  scope names (upstream's own error message for "A root scope name has to match the following pattern" tells you
  to re-run with ``-osd``). With ``disable_model_save`` it changes naming only, not output.
- ``copy_onnx_input_output_names_to_tflite`` rewrites names inside the ``.tflite`` files *onnx2tf* writes; it has no
  effect here because onnx2tf writes none. Our TFLite signature carries the input names (``TensorSpec`` names) and
  the ONNX output names (the keys of the dict the served function returns).
- ``non_verbose=True`` sets onnx2tf's logger to ``error`` (it prints with ``print`` to stdout, in colour). We also
  capture stdout while it runs: the captured ``ERROR:`` lines become the message of the ``UnsupportedError``.
- ``keep_ncw_or_nchw_or_ncdhw_input_names=[...]`` keeps the named 3/4/5-D inputs channels-first (``keep_layout``).
  Outputs are whatever layout onnx2tf ends with; :attr:`Onnx2TfResult.output_channels_last` reports it per output
  (onnx2tf stores it on the model as ``onnx_output_layouts``).
- ``disable_strict_mode`` is left ``False``: strict mode is onnx2tf's per-op accuracy correction (it compares
  with onnxruntime on the calibration/sample data while choosing transposes). It costs seconds, not minutes:
  onnx2tf's whole graph phase for ResNet-18, strict mode and onnxsim included, is ~6 s on 2 CPUs
  (benchmarks/results/resnet18.json).
- ``onnxruntime_output_memmap_dir`` is pointed into our private run directory so onnx2tf's memmap files do not end
  up in the system temp directory (upstream only removes its own temp dir at interpreter exit).

Other upstream behaviour this module works around (each also commented where it happens):

- Offline trap: when every input is 4-D with a static batch <= 20 and 3 channels (after the NHWC transpose), onnx2tf
  loads ``calibration_image_sample_data_20x128x128x3_float32.npy`` from the *current working directory* and
  otherwise downloads it (``utils/common_functions.download_test_image_data``: ``requests.get`` from GitHub
  releases, then a Wasabi S3 mirror); its INT8 path does the same. We run it with the cwd set to a private run
  directory holding a generated file of that name and shape (seeded uniform [0, 1) float32, where upstream ships
  20 COCO images; onnx2tf only uses it as sample input for its onnxruntime comparisons), so nothing is downloaded.
  A dynamic batch skips the load altogether.
- onnx2tf rewrites its input ONNX file in place (onnxsim three times, then sng4onnx op naming). We hand it a copy;
  the copy inlines external data (the dynamo exporter writes ``model.onnx.data`` beside the graph, which a bare file
  copy would leave behind).
- onnxsim is run as a subprocess called ``onnxsim`` found on ``PATH``; when the venv is not activated it is not
  found and onnx2tf silently skips simplification. We put the running interpreter's ``bin`` directory first on
  ``PATH`` for the duration of the call so the result does not depend on how the process was started.
- Importing onnx2tf sets ``TF_USE_LEGACY_KERAS=1`` in ``os.environ`` and installs global ``warnings`` filters that
  ignore every warning; both are restored after the import.
- onnx2tf reports many failures with ``sys.exit(1)``; an unimplemented op is a ``ModuleNotFoundError`` for
  ``onnx2tf.ops.<OpType>``; other failures carry the node name in ``exc.onnx_op_name``. All become one-line
  :class:`~converter.errors.UnsupportedError` messages naming the op where possible.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from converter.adapters.onnx2tf_saving import (ANSI, clean_name, first_line, save_saved_model, save_tflite,
                                                serving_function)
from converter.errors import UnsupportedError

#: The file name onnx2tf looks for in the current working directory (``download_test_image_data``).
CALIBRATION_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"
#: Its content upstream: 20 RGB images, 128x128, NHWC, float32 in [0, 1] (the name spells it out).
CALIBRATION_SHAPE = (20, 128, 128, 3)


# os.chdir, os.environ["PATH"] and onnx2tf's module-level logger state are process-global: one conversion at a time.
_LOCK = threading.RLock()


@dataclass(frozen=True)
class Onnx2TfTimings:
    """Seconds spent in each part of :func:`convert_with_onnx2tf`; a part that did not run is 0."""

    setup: float  # importing TensorFlow/onnx2tf (first call only), copying the ONNX file, the calibration file
    graph: float  # onnx2tf itself: onnxsim, op naming, building the tf_keras graph, strict-mode checks
    saved_model: float
    tflite_fp32: float
    tflite_fp16: float
    total: float


@dataclass(frozen=True)
class Onnx2TfResult:
    """Artifacts written (``None`` when not asked for) and what the TF side looks like."""

    saved_model: Path | None
    tflite_fp32: Path | None
    tflite_fp16: Path | None
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int | None, ...], ...]  # TF side, NHWC for 4-D inputs unless keep_layout
    output_names: tuple[str, ...]  # keys of the SavedModel/TFLite signature outputs, in ONNX output order
    output_channels_last: tuple[bool, ...]  # per output: did onnx2tf leave it NHWC/NWC/NDHWC
    keep_layout: bool
    seconds: Onnx2TfTimings


def convert_with_onnx2tf(
    onnx_path: Path,
    workdir: Path,
    *,
    saved_model: bool,
    tflite_fp32: bool,
    tflite_fp16: bool,
    keep_layout: bool = False,
    verbose: bool | None = None,
) -> Onnx2TfResult:
    """Convert ``onnx_path`` with onnx2tf and write only the requested artifacts into ``workdir``.

    Artifacts: ``workdir/saved_model/``, ``workdir/model_float32.tflite``, ``workdir/model_float16.tflite``
    (fixed names: give each conversion its own ``workdir``; it is created if missing). onnx2tf itself runs with its
    cwd in a fresh private subdirectory of ``workdir`` holding the ONNX copy and the calibration file, removed
    afterwards (also on failure); a process-wide lock serializes the chdir, so conversions never see each other's
    files. Inputs that are 3/4/5-D become channels-last unless ``keep_layout``; see the result's shapes.
    Raises :class:`UnsupportedError` (one line, naming the op where possible) when onnx2tf cannot convert the graph
    or the requested artifact cannot be written.
    """
    if verbose is None:
        from converter.frameworks import _VERBOSE

        verbose = _VERBOSE
    onnx_path = Path(onnx_path).resolve()
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    tf = _tensorflow()
    onnx2tf = _import_onnx2tf()
    with _private_cwd(workdir) as run_dir:
        # onnx2tf overwrites its input file (onnxsim, sng4onnx); give it a copy.
        onnx_copy = _copy_onnx(onnx_path, run_dir / "model.onnx")
        input_names = _onnx_input_names(onnx_copy) if keep_layout else []
        t0 = time.perf_counter()
        t_setup = t0 - start
        model = _run_onnx2tf(onnx2tf, onnx_copy, run_dir, input_names, keep_layout=keep_layout, verbose=verbose)
        t_graph = time.perf_counter() - t0

    names_in = tuple(clean_name(n) for n in model.input_names)
    names_out = tuple(clean_name(n) for n in model.output_names)
    layouts = getattr(model, "onnx_output_layouts", {}) or {}
    channels_last = tuple(bool(layouts.get(n, False)) for n in model.output_names)
    holder, concrete = serving_function(tf, model, names_in, names_out)

    sm_path = fp32_path = fp16_path = None
    t_sm = t_fp32 = t_fp16 = 0.0
    with _quiet(verbose):
        if saved_model:
            t0 = time.perf_counter()
            sm_path = workdir / "saved_model"
            save_saved_model(tf, holder, concrete, model, sm_path)
            t_sm = time.perf_counter() - t0
        if tflite_fp32:
            t0 = time.perf_counter()
            fp32_path = workdir / "model_float32.tflite"
            fp32_path.write_bytes(save_tflite(tf, holder, concrete, fp16=False))
            t_fp32 = time.perf_counter() - t0
        if tflite_fp16:
            t0 = time.perf_counter()
            fp16_path = workdir / "model_float16.tflite"
            fp16_path.write_bytes(save_tflite(tf, holder, concrete, fp16=True))
            t_fp16 = time.perf_counter() - t0
    shapes = tuple(tuple(None if d is None else int(d) for d in t.shape) for t in model.inputs)
    return Onnx2TfResult(
        saved_model=sm_path, tflite_fp32=fp32_path, tflite_fp16=fp16_path,
        input_names=names_in, input_shapes=shapes, output_names=names_out,
        output_channels_last=channels_last, keep_layout=keep_layout,
        seconds=Onnx2TfTimings(setup=t_setup, graph=t_graph, saved_model=t_sm, tflite_fp32=t_fp32, tflite_fp16=t_fp16,
                               total=time.perf_counter() - start),
    )


# --------------------------------------------------------------------------------------------------- environment


def _tensorflow() -> Any:
    from converter import frameworks

    return frameworks.tensorflow()


INSTALL_HINT = ("--route onnx2tf needs onnx2tf, an optional extra: pip install 'crossport[onnx2tf]' "
                "(best in an environment of its own: onnx2tf pins exact numpy/onnx/onnxruntime/tensorflow versions)")


def available() -> bool:
    """Whether the optional onnx2tf extra is installed (without importing it)."""
    import importlib.util  # noqa: PLC0415

    return "onnx2tf" in sys.modules or importlib.util.find_spec("onnx2tf") is not None


def _import_onnx2tf() -> Any:
    """Import onnx2tf without letting its import-time side effects leak into the process."""
    if "onnx2tf" in sys.modules:
        return sys.modules["onnx2tf"]
    if not available():
        raise UnsupportedError(INSTALL_HINT)
    # onnx2tf/onnx2tf.py sets os.environ["TF_USE_LEGACY_KERAS"] = "1" and calls warnings.simplefilter("ignore", ...)
    # for every warning category at import time; keep both local to the import.
    saved_env = os.environ.get("TF_USE_LEGACY_KERAS")
    with warnings.catch_warnings():
        from converter import frameworks

        with frameworks.silenced_stderr():
            import onnx2tf  # noqa: PLC0415
    if saved_env is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = saved_env
    return onnx2tf


def write_calibration_file(directory: Path) -> Path:
    """Write the sample-image file onnx2tf would otherwise download (seeded uniform [0, 1) data, NHWC float32)."""
    import numpy as np

    path = Path(directory) / CALIBRATION_FILE
    data = np.random.default_rng(0).random(CALIBRATION_SHAPE, dtype=np.float32)
    np.save(path, data)
    return path


@contextlib.contextmanager
def _private_cwd(workdir: Path) -> Iterator[Path]:
    """Run with cwd = a fresh directory inside ``workdir`` holding the calibration file; restore cwd and PATH."""
    with _LOCK:
        run_dir = Path(tempfile.mkdtemp(prefix="onnx2tf-run-", dir=workdir))
        # Offline trap: onnx2tf's download_test_image_data() reads CALIBRATION_FILE from os.getcwd() and otherwise
        # fetches it from github.com/PINTO0309/onnx2tf/releases (then a Wasabi S3 mirror) with requests.get.
        write_calibration_file(run_dir)
        old_cwd = os.getcwd()
        old_path = os.environ.get("PATH")
        # onnx2tf runs `onnxsim` via subprocess by bare name; without the venv's bin on PATH it is skipped silently.
        bin_dir = str(Path(sys.executable).parent)
        os.environ["PATH"] = bin_dir + (os.pathsep + old_path if old_path else "")
        os.chdir(run_dir)
        try:
            yield run_dir
        finally:
            os.chdir(old_cwd)
            if old_path is None:
                os.environ.pop("PATH", None)
            else:
                os.environ["PATH"] = old_path
            shutil.rmtree(run_dir, ignore_errors=True)


@contextlib.contextmanager
def _quiet(verbose: bool) -> Iterator[io.StringIO]:
    """Capture Python stdout (onnx2tf prints) and fd 2 (TF C++ logging) unless verbose."""
    buffer = io.StringIO()
    if verbose:
        yield buffer
        return
    from converter.frameworks import silenced_stderr

    with silenced_stderr(), contextlib.redirect_stdout(buffer), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield buffer


# ------------------------------------------------------------------------------------------------------ running


_PROTOBUF_LIMIT = 2_000_000_000


def _copy_onnx(source: Path, target: Path) -> Path:
    """Copy an ONNX file and its external data (the dynamo exporter writes ``model.onnx.data`` beside it).

    Small models are inlined into one file, which is what onnxsim and onnx2tf handle best; models beyond the 2 GB
    protobuf limit keep one external data file next to the copy.
    """
    import onnx

    try:
        model = onnx.load(str(source))
    except Exception as err:  # noqa: BLE001
        from converter.errors import ModelFileError

        raise ModelFileError(f"cannot read ONNX file {source}: {first_line(str(err))}") from err
    size = sum(len(t.raw_data) for t in model.graph.initializer)
    if size < _PROTOBUF_LIMIT:
        onnx.save(model, str(target))
    else:
        onnx.save(model, str(target), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=target.name + ".data")
    return target


def _major_version(onnx2tf: Any) -> int:
    import importlib.metadata  # noqa: PLC0415

    try:
        version = importlib.metadata.version("onnx2tf")
    except importlib.metadata.PackageNotFoundError:
        version = str(getattr(onnx2tf, "__version__", "1"))
    match = re.match(r"\d+", version)
    return int(match.group()) if match else 1


def _onnx_input_names(path: Path) -> list[str]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers]


def _run_onnx2tf(onnx2tf: Any, onnx_copy: Path, run_dir: Path, input_names: list[str], *, keep_layout: bool,
                 verbose: bool) -> Any:
    kwargs: dict[str, Any] = dict(
        input_onnx_file_path=str(onnx_copy),
        output_folder_path=str(run_dir / "onnx2tf_out"),
        disable_model_save=True,  # skip all three tf_keras SavedModel serializations (module docstring)
        output_signaturedefs=True,  # "/name" -> "wa/name": legal TF scope names
        onnxruntime_output_memmap_dir=str(run_dir / "ort_memmap"),
        non_verbose=not verbose,
        verbosity="debug" if verbose else "error",
    )
    if keep_layout and input_names:
        kwargs["keep_ncw_or_nchw_or_ncdhw_input_names"] = input_names
    if _major_version(onnx2tf) >= 2:
        # onnx2tf 2.x (Python 3.12+) defaults to a TFLite backend whose convert() returns no Keras model; the
        # tf_converter backend is the 1.x behaviour this adapter is built on.
        kwargs["tflite_backend"] = "tf_converter"
    with _quiet(verbose) as captured:
        try:
            return onnx2tf.convert(**kwargs)
        except SystemExit as err:  # onnx2tf calls sys.exit(1) after printing an ERROR line
            raise UnsupportedError(_failure_message(captured.getvalue(), None, onnx_copy)) from err
        except ModuleNotFoundError as err:
            name = getattr(err, "name", "") or ""
            if name.startswith("onnx2tf.ops."):
                op = name.rsplit(".", 1)[-1]
                raise UnsupportedError(f"onnx2tf has no converter for ONNX op {op}") from err
            raise
        except Exception as err:  # noqa: BLE001 - onnx2tf raises anything; classify into one line
            raise UnsupportedError(_failure_message(captured.getvalue(), err, onnx_copy)) from err


def _failure_message(log: str, err: BaseException | None, onnx_copy: Path) -> str:
    node = getattr(err, "onnx_op_name", None) if err is not None else None
    op_type = _op_type_of(onnx_copy, node) if node else None
    where = f" at {op_type} node {node!r}" if op_type else (f" at node {node!r}" if node else "")
    detail = ""
    if err is not None:
        detail = first_line(str(err)) or type(err).__name__
    if not detail:
        errors = [ANSI.sub("", line).strip() for line in log.splitlines() if "ERROR" in ANSI.sub("", line)]
        detail = errors[-1].split("ERROR:", 1)[-1].strip() if errors else "conversion stopped (sys.exit)"
    return f"onnx2tf failed{where}: {detail}"[:400]


def _op_type_of(onnx_copy: Path, node_name: str) -> str | None:
    try:
        import onnx

        graph = onnx.load(str(onnx_copy), load_external_data=False).graph
    except Exception:  # noqa: BLE001
        return None
    wanted = {node_name, node_name.replace("__", ":"), re.sub("^wa/", "/", node_name)}
    for node in graph.node:
        if node.name in wanted:
            return node.op_type
    return None
