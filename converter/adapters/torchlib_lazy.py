"""torchlib's compiled functions at the cost of the ones an export calls, not all of them.

Importing ``onnxscript.function_libs.torch_lib.ops`` compiles each of its ~50 ``@script`` functions (``div``,
``hardswish``, ``erf``, ...) from its Python source: 0.2 s of the 0.3 s import (onnxscript 0.7.2, measured by
timing ``script_check`` during the import), on the critical path of every PyTorch conversion, for the few such
functions one model calls. While that module is first imported (``compiled_on_first_use``), ``onnxscript.script``
makes a :class:`LazyScript` instead: the same ``OnnxFunction``, whose IR is compiled when something first asks
for it, from the module globals of its definition site as they were at definition (what the eager compile sees).

The exporter's registry asks every registered function for ``function_ir.domain`` (``get_torchlib_ops``); during
that call a not-yet-compiled function answers with its opset's domain -- the domain the compiler gives it -- and
compiles only if anything asks for more.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import sys
from typing import Any, Callable, Iterator

_OPS = "onnxscript.function_libs.torch_lib.ops"


class _DomainOnly:
    """What ``function_ir`` is while the registry lists the functions: the domain now, the real IR on demand."""

    __slots__ = ("_owner", "domain")

    def __init__(self, owner: Any) -> None:
        self._owner = owner
        self.domain = owner.opset.domain

    def __getattr__(self, name: str) -> Any:
        return getattr(self._owner._compiled(), name)  # noqa: SLF001 - the real IR, compiled now


def _lazy_class() -> type:
    from onnxscript._internal import ast_utils, main, values

    class LazyScript(values.OnnxFunction):  # type: ignore[misc, type-arg]
        """An ``OnnxFunction`` compiled on first use (module docstring)."""

        listing = False  # True while the registry lists functions: ``function_ir`` answers the domain only

        def __init__(self, opset: Any, pyfun: Callable[..., Any], env: dict[str, Any], default_opset: Any,
                     kwargs: dict[str, Any]) -> None:
            values.Op.__init__(self, opset, pyfun.__name__)  # what OnnxFunction's own __init__ calls first
            self.function = pyfun
            self.kwargs = kwargs
            self._lazy_env = (env, default_opset)
            self._lazy_ir: Any = None
            functools.update_wrapper(self, pyfun)
            self.traceable = False

        def __repr__(self) -> str:  # as an OnnxFunction prints (error messages name it)
            return f"OnnxFunction({self.function!r})"

        def _compiled(self) -> Any:
            if self._lazy_ir is None:
                src, f_ast = ast_utils.get_src_and_ast(self.function)
                env, default_opset = self._lazy_env
                irfun = main.script_check(f_ast, self.opset, env, src, default_opset=default_opset)
                irfun.meta["opset_version"] = self.opset.version
                self._lazy_source, self._lazy_ir = src, irfun
            return self._lazy_ir

        @property
        def function_ir(self) -> Any:
            if self._lazy_ir is None and type(self).listing:
                return _DomainOnly(self)
            return self._compiled()

        @function_ir.setter
        def function_ir(self, value: Any) -> None:
            self._lazy_ir = value

        @property
        def source(self) -> str:
            self._compiled()
            return self._lazy_source

        @source.setter
        def source(self, value: str) -> None:
            self._lazy_source = value

        @property
        def _signature(self) -> Any:  # OnnxFunction infers it at construction; here at first use
            if "_lazy_signature" not in self.__dict__:  # as OnnxFunction.__init__ infers it
                self.__dict__["_lazy_signature"] = values._schemas.op_signature_from_function(  # noqa: SLF001
                    self.function, domain=self._compiled().domain, name=self.name)
            return self.__dict__["_lazy_signature"]

        @_signature.setter
        def _signature(self, value: Any) -> None:
            if value is not None or "_lazy_signature" in self.__dict__:  # Op.__init__ sets None: not inferred yet
                self.__dict__["_lazy_signature"] = value

    return LazyScript


@functools.lru_cache(maxsize=1)
def lazy_script_class() -> type:
    return _lazy_class()


def _script(opset: Any = None, default_opset: Any = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """``onnxscript.script`` with the compilation deferred (the checks it makes up front, made up front)."""
    from onnxscript._internal import values

    opset = opset or values.Opset("this", 1)
    if not isinstance(opset, values.Opset):
        raise TypeError("Script parameter must be an opset. Did you use @script instead of @script()?")

    def transform(f: Callable[..., Any]) -> Any:
        if not inspect.isfunction(f):
            raise TypeError("The ONNXScript decorator should be applied to functions only.")
        module = inspect.getmodule(f)
        env = dict(vars(module)) if module is not None else {}
        env.update(inspect.getclosurevars(f).nonlocals)
        return lazy_script_class()(opset, f, env, default_opset, kwargs)

    return transform


def _applies() -> bool:
    """Only for the onnxscript whose ``script`` and ``OnnxFunction`` this module mirrors."""
    try:
        from onnxscript._internal import ast_utils, main, values
    except ImportError:
        return False
    init = inspect.signature(values.OnnxFunction.__init__)
    return (list(init.parameters) == ["self", "opset", "pyfun", "irfun", "source", "kwargs"]
            and hasattr(main, "script_check") and hasattr(ast_utils, "get_src_and_ast")
            and hasattr(getattr(values, "_schemas", None), "op_signature_from_function")
            and isinstance(values.OnnxFunction.__dict__.get("op_signature"), property))


@contextlib.contextmanager
def compiled_on_first_use() -> Iterator[None]:
    """torchlib's op modules imported with lazy ``@script`` functions (if not imported yet), and the exporter's
    listing of them answered without compiling (module docstring)."""
    if not _applies():
        yield
        return
    import onnxscript

    if _OPS not in sys.modules:
        real_script = onnxscript.script
        onnxscript.script = _script
        try:
            __import__(_OPS)
        finally:
            onnxscript.script = real_script
    try:
        from torch.onnx._internal._lazy_import import onnxscript_apis
        real_listing = onnxscript_apis.get_torchlib_ops
    except (ImportError, AttributeError):  # another torch layout: functions compile when listed
        yield
        return
    cls = lazy_script_class()

    def listing() -> Any:
        cls.listing = True
        try:
            return real_listing()
        finally:
            cls.listing = False

    had = "get_torchlib_ops" in vars(onnxscript_apis)  # torch's lazy-module proxy, or the module itself
    onnxscript_apis.get_torchlib_ops = listing
    try:
        yield
    finally:
        if had:
            onnxscript_apis.get_torchlib_ops = real_listing
        else:
            vars(onnxscript_apis).pop("get_torchlib_ops", None)
