"""Which routes can produce a PyTorch target, in which order ``--route auto`` tries them, and why one is skipped.

Two routes reach PyTorch:

- ``onnx``: Keras / SavedModel / ONNX -> ONNX (tf2onnx) -> onnxsim -> onnx2torch -> ``.pt2`` / TorchScript /
  ``--emit-source``. Works for every source format.
- ``keras-native``: a Keras 3 file reloaded under Keras' torch backend and ``torch.export``-ed
  (``converter.routes.keras_torch_backend``). Keras sources only, ``.pt2`` only; no ONNX in between, the Keras
  layer code itself is traced, so numerics follow Keras' own torch implementation.

``AUTO_ORDER`` puts keras-native first. Measured (crossport convert --json, seed 0, TF Keras vs the reloaded
``.pt2``) on the seven Keras fixtures and MobileNetV2: both routes verify everywhere and their max errors are within
a factor 2 of each other (keras-native lower on the transformer block and MobileNetV2, the ONNX route lower on the
CNN and the LSTM, equal on the other four; all <= 6.7e-6). So numbers do not separate them; structure does, and
keras-native is the more faithful one: every Keras variable becomes one ``nn.Parameter``/buffer under its own
Keras path, so weights shared across time steps stay shared (the ONNX route has to unroll GRUs, which duplicates
the recurrent kernels per step and leaves only one copy trainable), sequence lengths stay free, and none of the
upstream workarounds (tf2onnx BatchNorm folding, onnxsim, onnx2torch's missing converters) is involved. It costs
two extra process starts (about 10-20 s on small models). The ONNX route stays the fallback -- and the only route
for SavedModel/ONNX sources, TorchScript and ``--emit-source``.
"""
from __future__ import annotations

from dataclasses import dataclass

from converter.errors import CrossportError
from converter.formats import Format
from converter.result import RouteAttempt

ONNX = "onnx"
KERAS_NATIVE = "keras-native"
TORCH_ROUTES = (ONNX, KERAS_NATIVE)
AUTO_ORDER = (KERAS_NATIVE, ONNX)
TF_ROUTES = ("builder", "onnx2tf")


class RouteUsageError(CrossportError):
    """``--route`` names a route that does not apply to this source/target (a usage error at the CLI)."""

    exit_code = 2
    kind = "usage"


@dataclass(frozen=True)
class RoutePlan:
    order: tuple[str, ...]  # routes to try, in order
    skipped: tuple[RouteAttempt, ...]  # applicable-in-general routes ruled out before running, with the reason


def _why_not(route: str, fmt: Format, target: str, emit_source: bool) -> str:
    """Empty when ``route`` can run for this source/target, else the reason it cannot."""
    if route == KERAS_NATIVE:
        if fmt not in (Format.KERAS, Format.H5):
            return f"keras-native reloads Keras files under the torch backend; the source is {fmt.value}"
        if target != "pt2":
            return "keras-native writes .pt2 (torch.export) only; TorchScript comes from the onnx route"
        if emit_source:
            return "--emit-source writes model.py from the onnx route's module graph"
    return ""


def check_route(route: str, target: str) -> None:
    """Refuse a ``--route`` that belongs to the other direction (``builder``/``onnx2tf`` are TensorFlow-target
    routes, ``onnx``/``keras-native`` PyTorch-target routes)."""
    from converter.to_torch.pipeline import is_torch_target

    torch_target = is_torch_target(target)
    allowed = ("auto", *TORCH_ROUTES) if torch_target else ("auto", *TF_ROUTES)
    if route not in allowed:
        kind = "PyTorch" if torch_target else "TensorFlow/Keras/ONNX"
        raise RouteUsageError(f"--route {route} does not apply to {kind} targets (--to {target}); "
                              f"choose one of: {', '.join(allowed)}")


def plan_routes(route: str, fmt: Format, target: str, emit_source: bool) -> RoutePlan:
    """The routes to try for ``--route route``; a forced route that cannot run is a usage error."""
    check_route(route, target)
    if route != "auto":
        reason = _why_not(route, fmt, target, emit_source)
        if reason:
            raise RouteUsageError(f"--route {route}: {reason}")
        return RoutePlan((route,), ())
    order, skipped = [], []
    for name in AUTO_ORDER:
        reason = _why_not(name, fmt, target, emit_source)
        if not reason:
            order.append(name)
        elif name == KERAS_NATIVE and fmt in (Format.KERAS, Format.H5):
            skipped.append(RouteAttempt(name, "skipped", reason, 0.0))
    return RoutePlan(tuple(order), tuple(skipped))
