"""What one conversion job is: its options, where its output goes, its private work dir, its clock.

Shared by both directions so that output resolution, publishing, the manifest and timings exist once.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from converter.errors import CrossportError, OutputError
from converter.formats import TARGET_SUFFIXES, TARGETS, Format
from converter.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from converter.result import ConversionReport

ProgressFn = Callable[[str], None]

TORCH_TARGETS = ("pt2", "torch", "torchscript")
_TARGET_DEFAULT_SUFFIX = {"keras": ".keras", "onnx": ".onnx", "tflite": ".tflite", "saved_model": "_saved_model",
                          "pt2": ".pt2", "torch": ".pt2", "torchscript": ".pt"}


def is_torch_target(target: str) -> bool:
    return target in TORCH_TARGETS


@dataclass(frozen=True)
class ConvertOptions:
    """Everything ``convert`` needs besides the source; the CLI fills it from flags."""

    to: str | None = None
    output: str | None = None
    input_shapes: tuple[tuple[str | None, tuple[int, ...]], ...] = ()
    input_dtype: str | None = None  # None: what the model records (an ExportedProgram's int64 ids), else float32
    int_ranges: tuple[tuple[str | None, tuple[int, int]], ...] = ()  # --int-range: [NAME=]LO:HI (input_shapes)
    model_class: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_pickle: bool = False
    keep_layout: bool = False
    fp16: bool = False
    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL
    elementwise: bool = False  # plain |a-b| <= atol + rtol*|b|, without the scale term (compare.DEFAULT_SCALE)
    verify: bool = True
    force: bool = False
    seed: int = 0
    static_batch: bool = False
    report_path: str | None = None
    route: str = "auto"  # TF targets: builder, onnx2tf; PyTorch targets: onnx, keras-native; auto: in order
    nchw: bool = False  # torch targets: channels-first inputs/outputs, the permutation folded into the model
    trust_code: bool = False  # Keras sources: load with safe_mode=False (Lambda layers run code)
    emit_source: str | None = None  # torch targets: also write model.py + weights.pt to this directory
    allow_param_loss: bool = False  # publish even when trainable parameter counts differ (converter.errors 11)
    manifest: bool = True  # write the report beside the output as <output>.crossport.json (verify reads layouts)


@dataclass(frozen=True)
class ConversionResult:
    artifact: Path | None
    report: ConversionReport

    @property
    def passed(self) -> bool:
        return self.report.passed


def resolve_target(options: ConvertOptions) -> str:
    if options.to:
        to = options.to.lower().replace("-", "_").replace("savedmodel", "saved_model")
        if to == "tf":
            to = "saved_model"
        if to not in TARGETS:
            raise CrossportError(f"--to {options.to!r}: expected one of {', '.join(TARGETS)}")
        return to
    if options.output:
        suffix = Path(options.output).suffix.lower()
        if suffix in TARGET_SUFFIXES and TARGET_SUFFIXES[suffix] in TARGETS:
            return TARGET_SUFFIXES[suffix]
        if suffix == "":
            return "saved_model"
        raise CrossportError(f"output {options.output!r}: cannot tell the target from suffix {suffix!r}; pass --to")
    raise CrossportError("no target: pass --to keras|saved_model|tflite|onnx or an output path with a known suffix")


def resolve_output(source: str, target: str, options: ConvertOptions) -> Path:
    if options.output:
        out = Path(options.output)
    else:
        out = Path.cwd() / f"{_stem(source)}{_TARGET_DEFAULT_SUFFIX[target]}"
    if out.exists() and not options.force:
        raise OutputError(f"{out}: already exists; pass --force to replace it")
    if options.manifest:
        _check_manifest_slot(manifest_path(out), options.force)
    if out.exists() and out.is_dir() and target != "saved_model":
        raise OutputError(f"{out}: is a directory; a {target} output is a file")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"{parent}: output directory does not exist")
    if not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a directory; the output {out.name} cannot be written there")
    _probe_writable(parent)
    return out


def _stem(source: str) -> str:
    return Path(source.split(":")[-1]).stem if ":" in source else Path(source).stem


def model_name(source: str) -> str:
    """A Python-identifier name for the built model, from the source file name."""
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", _stem(source)) or "model"


def _probe_writable(directory: Path) -> None:
    """Create and remove a file: unlike ``os.access`` this also answers for root, read-only mounts and
    pseudo-filesystems, so an unwritable output is refused before minutes of conversion work."""
    try:
        with tempfile.NamedTemporaryFile(prefix=".crossport-probe-", dir=directory):
            pass
    except OSError as err:
        raise OutputError(f"{directory}: output directory is not writable ({err.strerror or err})") from err


def manifest_path(output: Path) -> Path:
    """``<output>.crossport.json``: where ``crossport verify`` looks for a candidate's layouts and route."""
    return Path(f"{str(output).rstrip('/')}.crossport.json")


def _check_manifest_slot(path: Path, force: bool) -> None:
    """Refuse to clobber a file at the manifest path unless it is a crossport report (or --force)."""
    if not path.exists() or force:
        return
    import json

    try:
        ours = json.loads(path.read_text()).get("kind", "").startswith("crossport.")
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OutputError(f"{path}: exists and is not a crossport report; move it, pass --no-manifest, or --force")


def write_manifest(result: ConversionResult) -> None:
    """Written after the model was published, through a temp file, so a manifest never describes a missing model."""
    if result.artifact is None:
        return
    path = manifest_path(result.artifact)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(result.report.to_json() + "\n")
    os.replace(tmp, path)


@contextmanager
def workdir(near: Path) -> Iterator[Path]:
    """A private temp dir on the output's filesystem (so the final move is atomic), always removed."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".crossport-", dir=near))
    except OSError:
        tmp = Path(tempfile.mkdtemp(prefix="crossport-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Clock:
    """Seconds per pipeline step (summed when a step repeats), announced through ``progress``."""

    def __init__(self, progress: ProgressFn | None) -> None:
        self.timings: dict[str, float] = {}
        self.progress = progress

    @contextmanager
    def step(self, key: str, message: str) -> Iterator[None]:
        if self.progress:
            self.progress(message)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - t0


def publish(tmp_artifact: Path, output: Path, force: bool) -> None:
    """Move a verified (or forced) artifact into place; replaces only under ``force``."""
    if output.exists():
        if not force:
            raise OutputError(f"{output}: appeared while converting; pass --force to replace it")
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
    os.replace(tmp_artifact, output)


def publish_dir(tmp_dir: Path, target: Path) -> None:
    """Move an emitted directory into place (replacing it only under --force, checked when planning)."""
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp_dir), str(target))


@dataclass(frozen=True)
class Job:
    """One conversion: the source and target, where the result goes, the work dir, the clock, the tolerance."""

    source: str
    fmt: Format
    target: str
    output: Path
    options: ConvertOptions
    clock: Clock
    tmp: Path

    @property
    def tol(self) -> Tolerance:
        from converter.parity.compare import DEFAULT_SCALE

        return Tolerance(self.options.atol, self.options.rtol, 0.0 if self.options.elementwise else DEFAULT_SCALE)

    def publish(self, artifact: Path) -> None:
        publish(artifact, self.output, self.options.force)
