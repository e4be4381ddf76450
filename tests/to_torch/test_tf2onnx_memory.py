"""The tf2onnx adapter's memory workarounds (``converter.adapters.tf_onnx``): optimizers run in place without leaking
NodeProto arenas, the freeze drops its frozen function early, and everything tf2onnx-global is restored after the
export; an optimizer that raises in place makes the export redo itself the way tf2onnx skips such an optimizer."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


def _export(keras_files: dict[str, Path], tmp_path: Path, name: str = "cnn") -> object:
    from converter.adapters import keras_load, tf_onnx

    model = keras_load.load_keras(str(keras_files[name]), trust_code=False)
    return tf_onnx.keras_to_onnx(model, tf_onnx.keras_signature(model, {}), tmp_path / f"{name}.onnx")


def test_export_restores_tf2onnx_globals(keras_files: dict[str, Path], tmp_path: Path) -> None:
    import onnx
    from tf2onnx import constants, graph, tf_loader

    update_proto, from_function = graph.Node.update_proto, tf_loader.from_function
    catch = os.environ.get(constants.ENV_TF2ONNX_CATCH_ERRORS)
    export = _export(keras_files, tmp_path)
    assert graph.Node.update_proto is update_proto and tf_loader.from_function is from_function
    assert os.environ.get(constants.ENV_TF2ONNX_CATCH_ERRORS) == catch
    proto = onnx.load(str(export.path))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 2 and ops.count("BatchNormalization") == 2, ops


def test_failing_optimizer_retries_with_copies(keras_files: dict[str, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """In place, a raising optimizer would leave a half-rewritten graph: the export is redone with tf2onnx's
    copy-per-optimizer mode, which skips it (as plain tf2onnx does)."""
    from collections import OrderedDict

    from tf2onnx import optimizer
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    class Broken(GraphOptimizerBase):
        def _optimize(self, graph):  # noqa: ANN001, ANN202
            raise RuntimeError("broken optimizer (test)")

    calls = []
    real = optimizer.optimize_graph

    def counting(graph, catch_errors=True, optimizers=None):  # noqa: ANN001, ANN202
        calls.append(catch_errors)
        return real(graph, catch_errors, optimizers)

    monkeypatch.setattr(optimizer, "_optimizers", OrderedDict([("broken", Broken), *optimizer._optimizers.items()]))
    monkeypatch.setattr(optimizer, "optimize_graph", counting)
    export = _export(keras_files, tmp_path)
    assert calls == [False, True]
    assert export.path.is_file()
