"""Parity assertions for your own tests, with or without the pytest plugin.

    from converter.testing import assert_parity
    assert_parity(torch_model, "model.keras", inputs=x, atol=1e-4, rtol=1e-4)

Models: paths in any format ``crossport verify`` reads, a ``torch.nn.Module`` or a ``keras.Model``. On a mismatch
``ParityMismatch`` (an ``AssertionError``) carries the per-output table and the first divergent layer.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from converter.parity.result import VerifyReport


class ParityMismatch(AssertionError):
    """The candidate's outputs are not within tolerance of the reference's; ``report`` has the details."""

    def __init__(self, message: str, report: "VerifyReport") -> None:
        super().__init__(message)
        self.report = report


def check_parity(reference: Any, candidate: Any, inputs: Any = None, *, atol: float = 1e-4, rtol: float = 1e-4,
                 tol: Mapping[str, tuple[float, float]] | None = None, seed: int = 0,
                 input_shapes: Mapping[str, Sequence[int]] | Sequence[Sequence[int]] | None = None,
                 layouts: Sequence[str] = (), manifest: str | None = None, layers: bool = False,
                 distributions: Sequence[str] = ("normal", "uniform", "large"), model_class: str | None = None,
                 trust_code: bool = False, report: str | Path | Sequence[str | Path] | None = None,
                 ) -> "VerifyReport":
    """Run the comparison and return the report without raising on a mismatch.

    ``inputs``: arrays/tensors in the reference's layout (one, a sequence, a dict by input name, or a list of such
    batches); without them inputs are drawn from the signature or ``input_shapes``. ``layouts``: ``--layout``
    strings such as ``"x=nhwc"`` (candidate side) or ``"ref:x=nchw"``. ``report``: .json/.html path(s) to write.
    """
    from converter.parity.loaders import LoadOptions
    from converter.parity.verify import VerifyOptions, verify

    shapes: tuple = ()
    if isinstance(input_shapes, Mapping):
        shapes = tuple((str(k), tuple(int(d) for d in v)) for k, v in input_shapes.items())
    elif input_shapes:
        shapes = tuple((None, tuple(int(d) for d in v)) for v in input_shapes)
    options = VerifyOptions(
        input_shapes=shapes, seed=seed, distributions=tuple(distributions), atol=atol, rtol=rtol,
        tolerances=tuple((k, float(a), float(r)) for k, (a, r) in (tol or {}).items()), layouts=tuple(layouts),
        manifest=manifest, load=LoadOptions(model_class=model_class, trust_code=trust_code), layers=layers,
        command=f"crossport verify {_name(reference)} {_name(candidate)} --atol {atol:g} --rtol {rtol:g} --seed {seed}",
    )
    result = verify(reference, candidate, options, inputs=inputs)
    paths = [report] if isinstance(report, (str, Path)) else list(report or ())
    for p in paths:
        result.write(p)
    return result


def assert_parity(reference: Any, candidate: Any, inputs: Any = None, **kwargs: Any) -> "VerifyReport":
    """``check_parity``, raising ``ParityMismatch`` with the per-output table when the outputs differ."""
    __tracebackhide__ = True
    result = check_parity(reference, candidate, inputs, **kwargs)
    if not result.passed:
        raise ParityMismatch("parity check failed\n" + result.format_text(), result)
    return result


def _name(model: Any) -> str:
    return str(model) if isinstance(model, (str, Path)) else f"<{type(model).__name__}>"
