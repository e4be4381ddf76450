"""Routes and the one loop that tries them, for both directions.

A ``Route`` is a name, ``applies`` (empty, or why it cannot run for this source/target) and ``run``. A
``RoutePlan`` lists the routes to try in order; ``try_routes`` runs them, keeps the first that verifies and
records a ``RouteAttempt`` for each. The directions differ only in policy, which the plan states:

- PyTorch targets (``onnx``, ``keras-native``): a route that raises (anything but an unsafe load or an unusable
  path) or fails verification hands over to the next; the report lists every attempt
  (``converter.conversion.keras_kind`` says which goes first).
- TensorFlow/Keras targets (``builder``, then ``onnx2tf``): only a graph the builder refuses hands over, and
  the report says so in a note; ``--to onnx`` has the one route that publishes the exported file.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any, Protocol

from converter.conversion.job import ConversionResult, ConvertOptions, Job, is_torch_target
from converter.conversion.ledger import Ledger
from converter.errors import CrossportError, InputPathError, OutputError, UnsafeLoadError, UnsupportedError
from converter.formats import Format
from converter.result import ConversionReport, RouteAttempt

ONNX = "onnx"
KERAS_NATIVE = "keras-native"
TORCH_EXPORT = "torch-export"  # PyTorch sources -> aoti / executorch
TORCH_ROUTES = (ONNX, KERAS_NATIVE, TORCH_EXPORT)
AUTO_ORDER = (ONNX, KERAS_NATIVE)  # plain (non-recurrent) Keras models
RECURRENT_ORDER = (KERAS_NATIVE, ONNX)  # recurrent layers, or a layer list that cannot be read
TF_ROUTES = ("builder", "onnx2tf")


class Route(Protocol):
    @property
    def name(self) -> str: ...

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        """Empty when the route can run for this source format and target, else the reason it cannot."""
        ...

    def run(self, source: Any, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        """Convert, verify, publish when verified (or ``--force`` and ``last``), and report."""
        ...


class RouteUsageError(CrossportError):
    """``--route`` names a route that does not apply to this source/target (a usage error at the CLI)."""

    exit_code = 2
    kind = "usage"


@dataclass(frozen=True)
class RoutePlan:
    routes: tuple[Route, ...]  # to try, in order
    skipped: tuple[RouteAttempt, ...] = ()  # applicable-in-general routes ruled out before running, with why
    basis: str = ""  # why --route auto chose this order (empty when nothing was chosen)
    torch: bool = True  # the direction, which sets the fallback policy (see the module docstring)

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)

    def hands_over(self, err: BaseException) -> bool:
        if not self.torch:
            from converter.conversion.routes.builder import BuildRefused

            return isinstance(err, BuildRefused)
        return not isinstance(err, (UnsafeLoadError, OutputError, InputPathError))


def _torch_routes() -> dict[str, Route]:
    from converter.conversion.routes.keras_native import KerasNativeRoute
    from converter.conversion.routes.onnx_torch import OnnxRoute
    from converter.conversion.routes.torch_export import TorchExportRoute

    return {ONNX: OnnxRoute(), KERAS_NATIVE: KerasNativeRoute(), TORCH_EXPORT: TorchExportRoute()}


def check_route(route: str, target: str) -> None:
    """Refuse a ``--route`` that belongs to the other direction (``builder``/``onnx2tf`` are TensorFlow-target
    routes, ``onnx``/``keras-native`` PyTorch-target routes)."""
    torch_target = is_torch_target(target)
    allowed = ("auto", *TORCH_ROUTES) if torch_target else ("auto", *TF_ROUTES)
    if route not in allowed:
        kind = "PyTorch" if torch_target else "TensorFlow/Keras/ONNX"
        raise RouteUsageError(f"--route {route} does not apply to {kind} targets (--to {target}); "
                              f"choose one of: {', '.join(allowed)}")


def plan_routes(route: str, fmt: Format, target: str, emit_source: bool, source: str | None = None) -> RoutePlan:
    """The routes to try for ``--route route``; a forced route that cannot run is a usage error. Under ``auto`` a
    Keras ``source`` picks ``AUTO_ORDER`` or ``RECURRENT_ORDER`` (``keras_kind``); without one, ``AUTO_ORDER``."""
    check_route(route, target)
    if not is_torch_target(target):
        return _plan_tf(route, fmt, target)
    from converter.conversion.keras_kind import FUSED_LSTM, PLAIN, keras_kind

    routes = _torch_routes()
    options = ConvertOptions(emit_source="emit" if emit_source else None)
    if route != "auto":
        reason = routes[route].applies(fmt, target, options)
        if reason:
            raise RouteUsageError(f"--route {route}: {reason}")
        return RoutePlan((routes[route],))
    auto_order, basis = AUTO_ORDER, ""
    if source is not None and not routes[KERAS_NATIVE].applies(fmt, target, options):
        kind, why = keras_kind(source)
        auto_order = AUTO_ORDER if kind in (PLAIN, FUSED_LSTM) else RECURRENT_ORDER
        basis = f"auto: {auto_order[0]} first ({why})"
    order, skipped = [], []
    for name in (*auto_order, TORCH_EXPORT):
        reason = routes[name].applies(fmt, target, options)
        if not reason:
            order.append(routes[name])
        elif name == KERAS_NATIVE and fmt in (Format.KERAS, Format.H5):
            skipped.append(RouteAttempt(name, "skipped", reason, 0.0))
    if not order:
        raise UnsupportedError(f"{source or 'the source'}: converting a {fmt.value} source to {target} is not "
                               "supported; PyTorch sources go to aoti or executorch (or to keras, saved_model, "
                               "tflite, onnx), Keras/SavedModel/ONNX sources to pt2, torchscript, aoti or executorch")
    return RoutePlan(tuple(order), tuple(skipped), basis if len(order) > 1 else "")


def _plan_tf(route: str, fmt: Format, target: str) -> RoutePlan:
    from converter.conversion.routes.builder import BuilderRoute
    from converter.conversion.routes.onnx2tf import Onnx2tfRoute
    from converter.conversion.routes.onnx_file import OnnxFileRoute

    if target == "onnx":
        return RoutePlan((OnnxFileRoute(),), torch=False)
    if route == "onnx2tf":
        if target == "keras":
            raise UnsupportedError("--route onnx2tf cannot produce a Keras 3 file (onnx2tf writes tf_keras "
                                   "models); use the default route for .keras")
        return RoutePlan((Onnx2tfRoute(),), torch=False)
    from converter.adapters import onnx2tf_adapter

    if route == "builder" or target == "keras" or not onnx2tf_adapter.available():  # onnx2tf is an optional extra
        return RoutePlan((BuilderRoute(),), torch=False)
    return RoutePlan((BuilderRoute(), Onnx2tfRoute()), torch=False)


def try_routes(plan: RoutePlan, source: Any, job: Job, ledger: Ledger) -> ConversionResult:
    """Run the plan's routes in order on copies of ``ledger``; keep the first result that verifies."""
    attempts: list[RouteAttempt] = list(plan.skipped)
    kept: ConversionResult | None = None
    for k, route in enumerate(plan.routes):
        last = k == len(plan.routes) - 1
        t0 = time.perf_counter()
        route_job = replace(job, tmp=job.tmp / route.name)
        route_job.tmp.mkdir()
        try:
            result = route.run(source, route_job, ledger.copy(), last)
        except Exception as err:  # noqa: BLE001 - in auto mode a route failure may move on to the next route
            if job.options.route != "auto" or last and kept is None or not plan.hands_over(err):
                if attempts and plan.torch:
                    _annotate(err, attempts)
                raise
            attempts.append(RouteAttempt(route.name, "rejected", _reason(err), time.perf_counter() - t0))
            if not plan.torch:
                nxt = plan.routes[k + 1].name
                ledger.notes.append(f"crossport's Keras builder could not convert the graph ({err}); used {nxt}")
            continue
        passed = result.report.passed or not result.report.verified
        reason = "" if passed else _failed_reason(result.report)
        attempts.append(RouteAttempt(route.name, "used" if passed else "failed verification", reason,
                                     time.perf_counter() - t0))
        kept = result
        if passed or last or not plan.torch:
            break
    assert kept is not None  # the last route either returned or raised
    report = replace(kept.report, timings=dict(job.clock.timings))
    if plan.torch:
        report = replace(report, route_attempts=tuple(attempts))
    if plan.basis:
        report = replace(report, notes=(*report.notes, plan.basis))
    if report.verified and not report.passed and len(attempts) > 1 and plan.torch:
        report = replace(report, notes=(*report.notes, "no route verified; the report shows the last one tried"))
    return replace(kept, report=report)


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    first = text.splitlines()[0][:300] if text else type(err).__name__
    return first if isinstance(err, CrossportError) else f"{type(err).__name__}: {first}"


def _failed_reason(report: ConversionReport) -> str:
    hop = report.failed_hop
    if hop is None:
        return "verification did not complete"
    if hop.error:
        return f"hop {hop.name}: {hop.error}"
    worst = max((o.max_abs_error for o in hop.outputs), default=float("nan"))
    return f"hop {hop.name}: max abs error {worst:.3g} > tolerance"


def _annotate(err: BaseException, attempts: list[RouteAttempt]) -> None:
    """Say which routes were tried before this error ended the conversion (the CLI prints the error's text)."""
    tried = "; ".join(a.describe() for a in attempts)
    if isinstance(err, CrossportError) and err.args:
        err.args = (f"{err.args[0]} [routes tried before: {tried}]", *err.args[1:])
