"""The ``keras-native`` route: a Keras 3 file reloaded under Keras' torch backend and ``torch.export``-ed to ``.pt2``.

The only module that runs Keras on the torch backend. Keras fixes its backend when it is first imported
(``KERAS_BACKEND``) and crossport's own process runs Keras on TensorFlow (the verification reference and the ONNX
route), so the export runs in a worker process: ``python -m converter.adapters.keras_torch_backend REQUEST.json``.

Upstream gaps answered here (see shared/reference/upstream.md, "Keras 3 as a bridge"):

- ``torch.export`` of a Keras model -- and Keras' own ``model.export(format="torch")``, which calls it with
  ``strict=False`` -- records every weight as a lifted *constant* (``c_lifted_tensor_*``), so the ``.pt2`` has no
  trainable parameters (measured with Keras 3.15.1 / torch 2.14.1: 13 constants, 0 trainable elements for the CNN
  fixture). Cause: non-strict export swaps a module's parameters for fakes by re-parametrising the module, but a
  Keras variable reads its own ``nn.Parameter`` through ``variable.value``, which the swap never reaches. We wrap
  the model in ``KerasModule``: it owns a copy of every variable (trainable -> ``nn.Parameter``, others ->
  buffers, under the Keras variable path) and binds them to the variables with ``keras.StatelessScope`` during
  ``forward`` -- the same mechanism Keras' stateless (JAX-style) calls use. The ``.pt2`` then has real parameters.
- A Keras model returns Keras tracking containers (``TrackedList``/``TrackedDict``); their pytree types would be
  named in the saved output spec. ``KerasModule`` returns a plain tensor or tuple, so loading needs no Keras.
- ``torch.export`` specialises a dimension whose example size is 1 (pytorch#176349, also noted in Keras'
  export_torch): the example batch comes from crossport's sample inputs (batch >= 2 when the batch is dynamic).

After the export a second fresh process loads the file with ``keras``, ``tensorflow``, ``converter`` and
``onnx2torch`` blocked in ``sys.modules`` and runs it on the verification inputs (``run_keras_free``); a program that
still needs Keras code at load time is rejected for this route, and the outputs it computed there are the ones
crossport compares with Keras -- the file is verified exactly as a plain-torch user would load it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from converter.errors import CrossportError, UnsafeLoadError, described

ROUTE = "keras-native"
BLOCKED_AT_LOAD = ("keras", "tensorflow", "converter", "onnx2torch", "crossport")
TIMEOUT_S = 900


@dataclass(frozen=True)
class NativeExport:
    """What the worker wrote and measured."""

    path: Path
    dynamic_batch: bool
    trainable: int  # elements in parameters that require grad, as the exported program reports them
    keras_trainable: int  # the same count on the Keras side
    lifted_constants: int  # float tensors torch.export stored as constants (0 when every weight was bound)
    notes: tuple[str, ...]


class RouteRejected(CrossportError):
    """This route cannot produce a faithful, plain-torch artifact for the model; the reason says why."""


def custom_object_paths() -> tuple[tuple[str, str], ...]:
    """(``module:qualname``, import root) of each Keras custom object registered in this process that a fresh
    process can import (a subclassed model's class must be registered before its file loads). The import root is
    the directory holding the module's top-level package, for modules that are importable here only because of
    the current directory or pytest's path. Classes defined inside functions are skipped."""
    keras = sys.modules.get("keras")
    if keras is None:
        return ()
    found = set()
    for obj in keras.saving.get_custom_objects().values():
        module, qual = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
        if not module or not qual or "<locals>" in qual or module == "__main__":
            continue
        file = getattr(sys.modules.get(module), "__file__", None)
        root = ""
        if file:
            levels = module.count(".") + 1 + (Path(file).name == "__init__.py")  # up to the top package's parent
            root = str(Path(file).resolve().parents[levels - 1])
        found.add((f"{module}:{qual}", root))
    return tuple(sorted(found))


def export_pt2(source: str, out: Path, example: Sequence[Any], *, trust_code: bool, dynamic_batch: bool,
               inputs_nhwc: tuple[bool, ...] = (), outputs_nhwc: tuple[bool, ...] = (), nchw: bool = False,
               workdir: Path) -> NativeExport:
    """Run the worker: load ``source`` under the torch backend, export it with ``example`` inputs (numpy arrays,
    already in the layout the PyTorch model takes) and save ``out``. Raises ``RouteRejected`` with the reason."""
    import numpy as np

    workdir, out = workdir.resolve(), out.resolve()  # the worker runs in workdir
    workdir.mkdir(parents=True, exist_ok=True)
    np.savez(workdir / "example.npz", **{f"in{i}": np.ascontiguousarray(a) for i, a in enumerate(example)})
    request = {"source": str(Path(source).resolve()), "out": str(out), "example": str(workdir / "example.npz"),
               "trust_code": trust_code, "dynamic_batch": dynamic_batch, "nchw": nchw,
               "inputs_nhwc": list(inputs_nhwc), "outputs_nhwc": list(outputs_nhwc),
               "custom_objects": list(custom_object_paths()), "result": str(workdir / "result.json")}
    req_path = workdir / "request.json"
    req_path.write_text(json.dumps(request))
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    try:
        proc = subprocess.run([sys.executable, "-m", "converter.adapters.keras_torch_backend", str(req_path)],
                              capture_output=True, text=True, env=env, timeout=TIMEOUT_S, cwd=str(workdir))
    except subprocess.TimeoutExpired as err:
        raise RouteRejected(f"the torch-backend export did not finish in {TIMEOUT_S} s") from err
    result_path = workdir / "result.json"
    if not result_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        raise RouteRejected(f"the torch-backend worker failed (exit {proc.returncode}): "
                            f"{tail[-1][:200] if tail else 'no output'}")
    result = json.loads(result_path.read_text())
    if result.get("error"):
        kind = result.get("kind")
        message = result["error"]
        if kind == "unsafe":
            raise UnsafeLoadError(message)
        raise RouteRejected(message)
    return NativeExport(out, bool(result["dynamic_batch"]), int(result["trainable"]), int(result["keras_trainable"]),
                        int(result["lifted_constants"]), tuple(result["notes"]))


_CHECK = r"""
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # importing any of these now raises ImportError
import numpy as np
import torch
data = np.load(sys.argv[2])
module = torch.export.load(sys.argv[1]).module()
results = {{}}
for j in range(int(data["n_sets"])):
    feeds = [torch.from_numpy(data[f"s{{j}}_in{{i}}"]) for i in range(int(data["n_in"]))]
    with torch.no_grad():
        out = module(*feeds)
    for k, o in enumerate(out if isinstance(out, (tuple, list)) else (out,)):
        results[f"s{{j}}_out{{k}}"] = o.numpy()
np.savez(sys.argv[3], **results)
"""


def run_keras_free(path: Path, feed_sets: Sequence[Sequence[Any]], workdir: Path) -> list[list[Any]]:
    """Load the ``.pt2`` in a fresh interpreter where Keras/TF/crossport/onnx2torch cannot be imported and run it on
    every feed set; returns the outputs per set. Raises ``RouteRejected`` when the program cannot load or run
    there (it still references their Python code)."""
    import numpy as np

    path, workdir = path.resolve(), workdir.resolve()
    feeds_npz, outs_npz = workdir / "check_in.npz", workdir / "check_out.npz"
    arrays = {f"s{j}_in{i}": np.ascontiguousarray(a) for j, feeds in enumerate(feed_sets) for i, a in enumerate(feeds)}
    np.savez(feeds_npz, n_sets=len(feed_sets), n_in=len(feed_sets[0]) if feed_sets else 0, **arrays)
    code = _CHECK.format(blocked=BLOCKED_AT_LOAD)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", code, str(path), str(feeds_npz), str(outs_npz)],
                          capture_output=True, text=True, env=env, timeout=TIMEOUT_S, cwd=str(workdir))
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()
        raise RouteRejected("the exported program does not load and run with plain torch (keras/crossport "
                            f"blocked): {tail[-1][:200] if tail else 'exit ' + str(proc.returncode)}")
    data = np.load(outs_npz)
    outs: list[list[Any]] = [[] for _ in feed_sets]
    for key in sorted(data.files, key=lambda k: (int(k[1:k.index("_")]), int(k.rsplit("out", 1)[1]))):
        outs[int(key[1:key.index("_")])].append(data[key])
    return outs


# ---------------------------------------------------------------- worker side (runs with KERAS_BACKEND=torch)


def _module_class() -> type:
    """``KerasModule`` is defined lazily: torch and keras are imported only in the worker."""
    import re

    import keras
    import torch

    from converter import keras_io

    class KerasModule(torch.nn.Module):
        """A Keras model as a real ``nn.Module``: its variables are this module's parameters (trainable) and
        buffers (the rest), named by the Keras variable path, bound to the model for each call."""

        def __init__(self, model: Any) -> None:
            super().__init__()
            object.__setattr__(self, "_model", model)  # not a submodule: its own parameters are the Keras ones
            self.layers = torch.nn.Module()
            self._bindings: list[tuple[Any, str]] = []
            taken: set[str] = set()
            reserved = set(dir(torch.nn.Module()))
            for var in model.weights:
                parts = [re.sub(r"\W", "_", p) or "w" for p in var.path.split("/")]
                parts = [p + "_" if p in reserved or p[0].isdigit() else p for p in parts]
                name, k = ".".join(parts), 1
                while name in taken:
                    k += 1
                    name = ".".join(parts[:-1] + [f"{parts[-1]}_{k}"])
                taken.add(name)
                owner = self.layers
                for seg in name.split(".")[:-1]:
                    if seg not in owner._modules:
                        owner.add_module(seg, torch.nn.Module())
                    owner = owner._modules[seg]
                value = var.value.detach().clone()
                leaf = name.split(".")[-1]
                if var.trainable and value.is_floating_point():
                    owner.register_parameter(leaf, torch.nn.Parameter(value))
                else:
                    owner.register_buffer(leaf, value)
                self._bindings.append((var, name))

        def forward(self, *xs: torch.Tensor):  # noqa: ANN201 - a tensor or a tuple of tensors
            state = dict(self.layers.named_parameters())
            state.update(self.layers.named_buffers())
            mapping = [(var, state[name]) for var, name in self._bindings]
            with keras.StatelessScope(state_mapping=mapping):
                out = self._model(keras_io.pack(self._model, list(xs)), training=False)
            if isinstance(out, (list, tuple, dict)):
                return tuple(keras_io.flatten(out))
            return out

    return KerasModule


def _import_custom_objects(paths: Sequence[Sequence[str]]) -> list[str]:
    import importlib

    notes = []
    for path, root in paths:
        if root and root not in sys.path:
            sys.path.append(root)
        module, _, qual = path.partition(":")
        try:
            obj: Any = importlib.import_module(module)
            for part in qual.split("."):
                obj = getattr(obj, part)
        except Exception as err:  # noqa: BLE001 - a user module may fail in any way
            notes.append(f"could not import custom object {path} ({type(err).__name__})")
    return notes


def _export(module: Any, example: tuple[Any, ...], dynamic: bool) -> tuple[Any, bool, list[str]]:
    import torch

    notes: list[str] = []
    if dynamic:
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        try:
            return torch.export.export(module, example, dynamic_shapes=(tuple({0: batch} for _ in example),),
                                       strict=False), True, notes
        except Exception as err:  # noqa: BLE001 - torch.export raises many kinds of errors
            notes.append(f"torch.export could not keep the batch dynamic ({described(err)}); the .pt2 has a fixed "
                         f"batch of {example[0].shape[0]}")
    return torch.export.export(module, example, strict=False), False, notes


def _worker(request: dict[str, Any]) -> dict[str, Any]:
    """Load, wrap, export, save; returns the result record (``error`` + ``kind`` on failure)."""
    import keras
    import numpy as np
    import torch

    if keras.backend.backend() != "torch":
        return {"error": f"KERAS_BACKEND is {keras.backend.backend()!r} in the worker", "kind": "internal"}
    notes = _import_custom_objects(request["custom_objects"])
    from converter.adapters.keras_load import load_keras

    try:
        model = load_keras(request["source"], request["trust_code"], keras_module=keras)
    except UnsafeLoadError as err:
        return {"error": str(err), "kind": "unsafe"}
    except Exception as err:  # noqa: BLE001
        return {"error": f"Keras could not load the file under the torch backend ({described(err)})", "kind": "load"}
    if not isinstance(model, torch.nn.Module):
        return {"error": "the loaded Keras model is not a torch.nn.Module", "kind": "internal"}
    wrapped: Any = _module_class()(model).eval()
    if request["nchw"]:
        from converter.to_torch.modules import ChannelsFirst  # plain torch; traced into the graph

        wrapped = ChannelsFirst(wrapped, tuple(request["inputs_nhwc"]), tuple(request["outputs_nhwc"])).eval()
    data = np.load(request["example"])
    example = tuple(torch.from_numpy(data[f"in{i}"]) for i in range(len(data.files)))
    try:
        program, dynamic, export_notes = _export(wrapped, example, request["dynamic_batch"])
    except Exception as err:  # noqa: BLE001
        return {"error": f"torch.export failed on the torch-backend Keras model: {described(err)}", "kind": "export"}
    notes.extend(export_notes)
    lifted = [s.target for s in program.graph_signature.input_specs if s.kind.name == "CONSTANT_TENSOR"]
    lifted_float = [t for t in lifted if program.constants[t].is_floating_point() and program.constants[t].numel() > 1]
    # Only lost *variables* matter: Keras layers also hold plain tensors (Normalization's mean/variance in
    # EfficientNet), which are constants on both sides.
    variable_elements = int(sum(int(np.prod(v.shape)) for v in model.variables))
    bound_elements = int(sum(t.numel() for t in program.state_dict.values()))
    if lifted_float and bound_elements < variable_elements:
        notes.append(f"{len(lifted_float)} tensor(s) were stored as constants (not parameters)")
    elif lifted_float:
        notes.append(f"{len(lifted_float)} constant tensor(s) of the Keras model (not variables) stay constants")
        lifted_float = []
    from converter.device_free import make_device_free

    notes.extend(make_device_free(program))  # Keras' torch backend adds a .to(cpu) per tensor: gone, so .to() works
    torch.export.save(program, request["out"])
    trainable = sum(p.numel() for p in program.module().parameters() if p.requires_grad)
    keras_trainable = int(sum(int(np.prod(w.shape)) for w in model.trainable_weights))
    return {"error": "", "dynamic_batch": dynamic, "trainable": int(trainable), "keras_trainable": keras_trainable,
            "lifted_constants": len(lifted_float), "notes": notes}


def main(argv: Sequence[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    t0 = time.perf_counter()
    try:
        result = _worker(request)
    except Exception as err:  # noqa: BLE001 - reported to the parent as a rejection reason
        result = {"error": f"torch-backend export failed: {described(err)}", "kind": "internal"}
    result["seconds"] = round(time.perf_counter() - t0, 3)
    Path(request["result"]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    if os.environ.get("KERAS_BACKEND") != "torch":
        os.environ["KERAS_BACKEND"] = "torch"  # before anything imports keras
    sys.exit(main(sys.argv[1:]))
