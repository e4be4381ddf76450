"""Artifacts that work where users take them: a crossport ``.keras`` under every Keras backend, and the layout
contract inside every artifact so a renamed file with no sidecar still verifies.

The backend checks run outside crossport: a fresh interpreter with ``KERAS_BACKEND=torch`` / ``jax`` and nothing
but Keras loads the file and runs it on inputs the test computed the PyTorch source's outputs for.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from converter.cli import main

pytestmark = pytest.mark.slow


class NestedCNN(nn.Module):
    """Module paths with dots (``features.0.0``): what the torch backend refused as parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()),
                                      nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 4 * 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LSTMHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.ModuleDict({"lstm": nn.LSTM(3, 8, batch_first=True)})
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn["lstm"](x)
        return self.head(out[:, -1, :])


def _transformer() -> nn.Module:
    from fixtures.models import build

    return build("transformer_block")


CASES = {  # name: (model factory, input shape, channels-first image input)
    "cnn": (NestedCNN, (2, 3, 8, 8), True),
    "lstm": (LSTMHead, (2, 5, 3), False),
    "transformer": (_transformer, (2, 4, 16), False),
}

_LOAD_AND_RUN = """
import sys, numpy as np, keras
model = keras.models.load_model(sys.argv[1])
out = keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False))
np.save(sys.argv[3], np.asarray(out))
print(keras.backend.backend(), sorted(l.name for l in model.layers)[:3])
"""


def _run_keras(backend: str, model: Path, x: np.ndarray, tmp: Path) -> np.ndarray:
    """Load and run ``model`` in a fresh interpreter under ``backend`` (plain Keras, crossport not imported)."""
    np.save(tmp / "x.npy", x)
    env = {**os.environ, "KERAS_BACKEND": backend, "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, str(model), str(tmp / "x.npy"),
                           str(tmp / f"y_{backend}.npy")], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith(backend), proc.stdout
    return np.load(tmp / f"y_{backend}.npy")


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, np.ndarray, np.ndarray]]:
    """Each case as ``.keras``, with an input (in the Keras layout) and the source's output from PyTorch itself."""
    from converter import convert

    d = tmp_path_factory.mktemp("backends")
    out = {}
    for name, (factory, shape, image) in CASES.items():
        torch.manual_seed(0)
        model = factory().eval()
        x = torch.randn(*shape)
        pt2 = d / f"{name}.pt2"
        torch.export.save(torch.export.export(model, (x,)), str(pt2))
        result = convert(str(pt2), output=str(d / f"{name}.keras"))
        assert result.passed, result.report.format_text()
        with torch.no_grad():
            expected = model(x).numpy()
        feed = np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1)) if image else x.numpy()
        out[name] = (d / f"{name}.keras", feed, expected)
    return out


@pytest.mark.parametrize("backend", ["tensorflow", "torch", "jax"])
@pytest.mark.parametrize("case", list(CASES))
def test_keras_file_loads_and_matches_under_backend(converted, case: str, backend: str, tmp_path: Path) -> None:
    path, feed, expected = converted[case]
    got = _run_keras(backend, path, feed, tmp_path)
    assert got.shape == expected.shape
    err = float(np.max(np.abs(got - expected)))
    print(f"{case} KERAS_BACKEND={backend}: max abs error {err:.3e}")
    assert err <= 1e-4 + 1e-4 * float(np.max(np.abs(expected))), err


def test_layer_names_take_every_backend_and_keep_the_module_path(converted) -> None:
    import keras

    from converter import contract

    path = converted["cnn"][0]
    names = {layer.name for layer in keras.models.load_model(str(path)).layers}
    assert "features_0_0" in names and not any("." in n for n in names)
    paths = contract.read(path).layer_paths
    assert paths["features_0_0"] == "features.0.0" and paths["head_1"] == "head.1"
    report = json.loads(Path(f"{path}.crossport.json").read_text())
    assert report["layer_paths"]["features_0_0"] == "features.0.0"


def test_per_layer_localization_reports_module_paths(converted) -> None:
    """verify --layers pairs the Keras layers with the PyTorch modules and names them by module path."""
    from converter.parity.options import VerifyOptions
    from converter.parity.verify import verify

    path = converted["cnn"][0]
    report = verify(str(path.with_suffix(".pt2")), str(path), VerifyOptions(layers=True))
    assert report.passed, report.format_text()
    names = [layer.name for layer in report.layers.layers]
    assert "features.0.0" in names and "head.1" in names, names


def test_keras_saved_under_torch_backend_converts_to_pt2(converted, tmp_path: Path) -> None:
    """A crossport .keras loaded and re-saved under KERAS_BACKEND=torch still converts to .pt2 and matches."""
    from converter import convert

    resaved = tmp_path / "resaved.keras"
    code = "import sys, keras; keras.models.load_model(sys.argv[1]).save(sys.argv[2])"
    env = {**os.environ, "KERAS_BACKEND": "torch", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code, str(converted["cnn"][0]), str(resaved)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = convert(str(resaved), output=str(tmp_path / "m.pt2"))
    assert result.passed, result.report.format_text()


# ---- the layout contract travels with the model -----------------------------------------------------------


def _keras_source(tmp: Path) -> Path:
    from fixtures import keras_models

    return keras_models.save("cnn", tmp / "kcnn.keras")


@pytest.mark.parametrize("target,suffix,layout", [
    ("keras", ".keras", "nhwc"), ("onnx", ".onnx", "nchw"), ("tflite", ".tflite", "nhwc"),
    ("saved_model", "_sm", "nhwc"), ("pt2", ".pt2", "nhwc"), ("torchscript", ".pt", "nhwc"),
])
def test_renamed_output_without_sidecar_still_verifies(saved_sources, tmp_path: Path, target: str, suffix: str,
                                                       layout: str) -> None:
    source = str(_keras_source(tmp_path)) if target in ("pt2", "torchscript") else str(saved_sources["pt2"])
    out = tmp_path / f"model{suffix}"
    runner = CliRunner()
    res = runner.invoke(main, ["convert", source, "-o", str(out), "--to", target, "-q"])
    assert res.exit_code == 0, res.output
    sidecar = Path(f"{out}.crossport.json")
    assert sidecar.is_file()
    sidecar.unlink()
    moved = tmp_path / f"renamed{suffix}"
    out.rename(moved)
    res = runner.invoke(main, ["verify", source, str(moved), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output)
    assert report["passed"] and report["manifest"] == f"{moved} (embedded contract)"
    assert any("embedded" in n for n in report["notes"])
    x = report["inputs"][0]
    assert x["candidate_layout"].lower() == layout and x["layout_from"] == "manifest", x


def test_contract_is_where_each_framework_keeps_metadata(saved_sources, tmp_path: Path) -> None:
    """Readable with the framework's own API, not only crossport's reader."""
    import onnx

    from converter import convert

    out = tmp_path / "m.onnx"
    assert convert(str(saved_sources["pt2"]), output=str(out), manifest=False).passed
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(props["crossport.contract"])["inputs"][0]["source_layout"] == "NCHW"
    pt = tmp_path / "m.pt"
    assert convert(str(_keras_source(tmp_path)), output=str(pt), to="torchscript", manifest=False).passed
    extra = {"crossport.json": ""}
    torch.jit.load(str(pt), _extra_files=extra)
    assert json.loads(extra["crossport.json"])["kind"] == "crossport.contract"
    assert not Path(f"{pt}.crossport.json").exists()  # --no-manifest: no sidecar, the contract is inside


def test_sidecar_that_disagrees_with_the_model_stops_verify(saved_sources, tmp_path: Path) -> None:
    out = tmp_path / "m.keras"
    runner = CliRunner()
    assert runner.invoke(main, ["convert", str(saved_sources["pt2"]), "-o", str(out), "-q"]).exit_code == 0
    sidecar = Path(f"{out}.crossport.json")
    data = json.loads(sidecar.read_text())
    data["inputs"][0]["target_layout"] = "NCHW"  # e.g. left over from another conversion
    sidecar.write_text(json.dumps(data))
    res = runner.invoke(main, ["verify", str(saved_sources["pt2"]), str(out)])
    assert res.exit_code == 7 and "disagree" in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_foreign_zip_entry_is_not_a_contract(tmp_path: Path) -> None:
    from converter import contract

    path = tmp_path / "x.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("crossport.json", "not json")
    assert contract.read(path) is None
