"""What one conversion job is: its options, where its output goes, its private work dir, its clock.

Shared by both directions so that output resolution, publishing and timings exist once (the manifest beside the
output: ``converter.conversion.manifest``).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from converter import interrupt
from converter.errors import CrossportError, OutputError, UsageError
from converter.conversion.manifest import check_manifest_slot, manifest_path
from converter.formats import TARGET_SUFFIXES, TARGETS, Format
from converter.parity.compare import DEFAULT_ATOL, DEFAULT_RTOL, Tolerance
from converter.result import ConversionReport

if TYPE_CHECKING:
    from converter.contract import Contract

ProgressFn = Callable[[str], None]

DEPLOY_TARGETS = ("aoti", "executorch")  # PyTorch deployment artifacts, each verified in its own runtime
TORCH_TARGETS = ("pt2", "torch", "torchscript", *DEPLOY_TARGETS)
TARGET_DEFAULT_SUFFIX = {"keras": ".keras", "onnx": ".onnx", "tflite": ".tflite", "saved_model": "_saved_model",
                          "pt2": ".pt2", "torch": ".pt2", "torchscript": ".pt", "aoti": "_aoti.pt2",
                          "executorch": ".pte"}


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
    weights_key: str | None = None  # where a checkpoint dict keeps the weights (dotted)
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
    model_version: int | None = None  # saved_model: write DIR/<N>/ (TF Serving's model base path layout)
    # TFLite quantization (converter.parity.quality.MODES); ``fp16=True`` is the older spelling of "fp16"
    quantize: str | None = None
    calibration: str | None = None  # .npz of samples per input, in the source's layout (int8 modes)
    allow_flex: bool = False  # write a .tflite that needs Select TF (Flex) ops, which LiteRT cannot run
    min_cosine: float | None = None  # overrides of the mode's default thresholds (quality.DEFAULT_THRESHOLDS)
    min_snr_db: float | None = None
    min_top1: float | None = None
    latency_runs: int = 5  # timed calls per runtime (after one warm-up) for the report's latency; 0 = skip
    # Stop timing a runtime once its timed calls take this long (at least two, three counting a verification run;
    # a ConvNeXt-T call takes ~0.08 s, ViT-B/16's 0.2-0.5 s). None: exactly ``latency_runs`` calls.
    latency_budget_s: float | None = 0.25

    @property
    def quant_mode(self) -> str | None:
        return self.quantize or ("fp16" if self.fp16 else None)


@dataclass(frozen=True)
class ConversionResult:
    artifact: Path | None
    report: ConversionReport

    @property
    def passed(self) -> bool:
        return self.report.passed


def check_quantization(options: ConvertOptions, target: str) -> None:
    """Refuse quantization options that cannot apply, before any model is loaded."""
    from converter.errors import UsageError
    from converter.parity.quality import MODES

    mode = options.quant_mode
    if options.quantize and options.quantize not in MODES:
        raise UsageError(f"--quantize {options.quantize}: unknown mode; choose one of {', '.join(MODES)}")
    if options.quantize and options.fp16 and options.quantize != "fp16":
        raise UsageError(f"--fp16 and --quantize {options.quantize} contradict each other (--fp16 means "
                         "--quantize fp16)")
    if mode and target != "tflite":
        raise UsageError(f"--quantize {mode} applies to TFLite only, not --to {target}; write a .tflite output")
    if options.calibration and mode not in ("int8", "int8-full"):
        raise UsageError(f"--calibration {options.calibration}: only the int8 modes calibrate "
                         "(--quantize int8 or int8-full)")
    if options.allow_flex and target != "tflite":
        raise UsageError(f"--allow-flex applies to TFLite only, not --to {target}")
    for flag, value in (("--min-cosine", options.min_cosine), ("--min-top1", options.min_top1)):
        if value is not None and not 0.0 <= value <= 1.0:
            raise UsageError(f"{flag} {value:g}: expected a number between 0 and 1")
    if (options.min_cosine, options.min_snr_db, options.min_top1) != (None, None, None) and not mode:
        raise UsageError("--min-cosine/--min-snr/--min-top1 judge quantized TFLite; pass --quantize")
    if options.latency_runs < 0:
        raise UsageError(f"--latency-runs {options.latency_runs}: expected 0 (skip) or more")
    if options.calibration:
        from converter import calibration

        calibration.check_file(options.calibration)


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
        out = Path.cwd() / f"{source_stem(source)}{TARGET_DEFAULT_SUFFIX[target]}"
    if options.model_version is not None:
        out = _versioned(out, target, options.model_version)
    elif out.exists() and not options.force:
        versions = serving_versions(out)
        if versions:
            raise OutputError(f"{out}: already exists, a TF Serving model base path (versions "
                              f"{', '.join(map(str, versions))}); pass --model-version N to add version N")
        raise OutputError(f"{out}: already exists; pass --force to replace it")
    if out.exists() and not options.force:
        raise OutputError(f"{out}: already exists; pass --force to replace it")
    if options.manifest:
        check_manifest_slot(manifest_path(out), options.force)
    if out.exists() and out.is_dir() and target != "saved_model":
        raise OutputError(f"{out}: is a directory; a {target} output is a file")
    parent = out.parent if str(out.parent) else Path(".")
    if options.model_version is not None and not parent.exists():
        parent = parent.parent if str(parent.parent) else Path(".")  # the base directory is made when publishing
    if not parent.exists():
        raise OutputError(f"{parent}: output directory does not exist")
    if not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a directory; the output {out.name} cannot be written there")
    _probe_writable(parent)
    return out


def _versioned(base: Path, target: str, version: int) -> Path:
    """``BASE/<version>``: the layout TF Serving's ``--model_base_path`` expects. ``BASE`` may already hold other
    versions; a SavedModel or a file at ``BASE`` is refused (never turned into a base path)."""
    if target != "saved_model":
        raise UsageError(f"--model-version applies to --to saved_model (TF Serving's versioned layout), not {target}")
    if version < 0:
        raise UsageError(f"--model-version {version}: TF Serving versions are non-negative integers")
    if base.exists() and not base.is_dir():
        raise OutputError(f"{base}: is a file; --model-version writes {base}/{version}/ inside a directory")
    if (base / "saved_model.pb").exists() or (base / "saved_model.pbtxt").exists():
        raise OutputError(f"{base}: is a SavedModel itself, not a TF Serving model base path; pass another "
                          f"directory (crossport writes DIR/{version}/saved_model.pb)")
    return base / str(version)


def serving_versions(base: Path) -> tuple[int, ...]:
    """The version subdirectories TF Serving would load from ``base`` (numeric names holding a SavedModel)."""
    if not base.is_dir():
        return ()
    return tuple(sorted(int(p.name) for p in base.iterdir()
                        if p.name.isdigit() and p.is_dir() and (p / "saved_model.pb").exists()))


def existing_ancestor(path: Path) -> Path:
    """The nearest existing directory at or above ``path``'s parent (the work dir goes there: same filesystem)."""
    parent = path.parent if str(path.parent) else Path(".")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def source_stem(source: str) -> str:
    return Path(source.split(":")[-1]).stem if ":" in source else Path(source).stem


def model_name(source: str) -> str:
    """A Python-identifier name for the built model, from the source file name."""
    import re

    return re.sub(r"[^A-Za-z0-9_]", "_", source_stem(source)) or "model"


def _probe_writable(directory: Path) -> None:
    """Create and remove a file: unlike ``os.access`` this also answers for root, read-only mounts and
    pseudo-filesystems, so an unwritable output is refused before minutes of conversion work."""
    try:
        with tempfile.NamedTemporaryFile(prefix=".crossport-probe-", dir=directory):
            pass
    except OSError as err:
        raise OutputError(f"{directory}: output directory is not writable ({err.strerror or err})") from err


@contextmanager
def workdir(near: Path) -> Iterator[Path]:
    """A private temp dir on the output's filesystem (so the final move is atomic), always removed -- with any
    in-memory scratch dir linked from it (``memory_scratch``)."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=".crossport-", dir=near))
    except OSError:
        tmp = Path(tempfile.mkdtemp(prefix="crossport-"))
    try:
        yield tmp
    finally:
        for root, dirs, _ in os.walk(tmp):  # does not descend into links
            for name in dirs:
                link = Path(root) / name
                if link.is_symlink() and Path(os.readlink(link)).parent == _SHM:
                    shutil.rmtree(os.readlink(link), ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)


_SHM = Path("/dev/shm")
_SHM_SPARE = 1 << 30


def memory_scratch(work: Path, size_hint: int) -> Path:
    """A directory for intermediate files in RAM (``/dev/shm``) when it has room for them with 1 GiB to spare,
    linked from ``work`` so that ``workdir`` removes it; else ``work`` itself. Why: the intermediate ONNX's weights
    are written once and read once; on this project's disks writing ViT-B/16's 346 MB took 1.3 s of the export."""
    try:
        if not _SHM.is_dir() or not os.access(_SHM, os.W_OK) or \
                shutil.disk_usage(_SHM).free < 4 * size_hint + _SHM_SPARE:
            return work
        link = work / "in-memory"
        if not link.exists():
            link.symlink_to(tempfile.mkdtemp(prefix="crossport-", dir=_SHM), target_is_directory=True)
        return link
    except OSError:
        return work


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
            interrupt.check()


def publish(tmp_artifact: Path, output: Path, force: bool) -> None:
    """Move a verified (or forced) artifact into place; replaces only under ``force``."""
    interrupt.check()
    if output.exists():
        if not force:
            raise OutputError(f"{output}: appeared while converting; pass --force to replace it")
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
    output.parent.mkdir(exist_ok=True)  # a TF Serving base directory (--model-version) is made only now
    os.replace(tmp_artifact, output)


def publish_dir(tmp_dir: Path, target: Path) -> None:
    """Move an emitted directory into place (replacing it only under --force, checked when planning)."""
    interrupt.check()
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(tmp_dir), str(target))


@dataclass
class SourceSession:
    """One source converted to several targets in one invocation (``crossport convert a.pt2 --to keras --to
    tflite``): what the targets share -- the loaded model, its ONNX export, the first verified hop -- is made once,
    in ``tmp``, which lives until the last target is done."""

    tmp: Path
    targets: tuple[str, ...]
    memo: dict[str, Any] = field(default_factory=dict)
    made_by: dict[str, str] = field(default_factory=dict)  # memo key -> the target whose job made it


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
    session: SourceSession | None = None

    def shared(self, key: str, make: Callable[[Path], Any]) -> Any:
        """``make(work_dir)`` once per source: alone, in this job's work dir; in a session, in the session's,
        and the later targets reuse the value (the report of each says which target made it)."""
        if self.session is None:
            return make(self.tmp)
        if key not in self.session.memo:
            try:
                self.session.memo[key] = make(self.session.tmp)
            except CrossportError as err:  # the source itself is at fault: every later target fails the same way
                self.session.memo[key] = err
            self.session.made_by[key] = self.target
        value = self.session.memo[key]
        if isinstance(value, CrossportError):
            raise value
        return value

    def reused(self, key: str) -> str:
        """The target whose job made ``key``, when it was not this one (for the report's notes); else empty."""
        if self.session is None:
            return ""
        by = self.session.made_by.get(key, self.target)
        return "" if by == self.target else by

    @property
    def tol(self) -> Tolerance:
        from converter.parity.compare import DEFAULT_SCALE

        return Tolerance(self.options.atol, self.options.rtol, 0.0 if self.options.elementwise else DEFAULT_SCALE)

    def publish(self, artifact: Path, contract: Contract | None = None) -> str:
        """Move the artifact into place; with ``contract``, first store it inside the artifact (always: unlike the
        sidecar, which ``--no-manifest`` skips, it leaves no extra file). Returns a note when that failed."""
        note = ""
        if contract is not None:
            from converter.contract import embed

            if not embed(artifact, self.target, contract):
                note = (f"the layout contract could not be stored inside the {self.target} file; keep "
                        f"{manifest_path(self.output).name} beside it for crossport verify")
        publish(artifact, self.output, self.options.force)
        return note
