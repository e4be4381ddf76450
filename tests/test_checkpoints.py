"""Checkpoints as users save them (#14): dict checkpoints, wrapper prefixes, safetensors (single and sharded),
``.bin``, CUDA-made files -- each converted through the real CLI and compared outside crossport, and every bad
checkpoint answered with one line that says why."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from converter.errors import ModelClassError, ModelFileError
from converter.state_dicts import best_fit, find_state_dict, load_into

REPO = Path(__file__).resolve().parents[1]
GPU_ORIGIN = REPO.parent / "shared" / "fixtures" / "gpu_origin"
CLASS = "fixtures.models:SmallCNN"


def _small_cnn() -> nn.Module:
    from fixtures.models import build

    return build("small_cnn", seed=3).eval()


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """The real CLI in-process (frameworks imported once), as the user would call it from the repository root."""
    from click.testing import CliRunner

    from converter.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def _onnx_matches(onnx_path: Path, model: nn.Module, shape: tuple[int, ...]) -> float:
    """Max abs error of the written ONNX file against ``model``, run with onnxruntime -- outside crossport."""
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    return float(np.abs(got - want).max())


# ---- finding the weights -----------------------------------------------------------------------------------


def test_tutorial_checkpoint_finds_model_state_dict() -> None:
    sd = _small_cnn().state_dict()
    found = find_state_dict({"epoch": 3, "model_state_dict": sd, "optimizer_state_dict": {"state": {}},
                             "loss": 0.1}, Path("ck.pt"))
    assert found.where == "model_state_dict" and found.state.keys() == sd.keys()


def test_plain_state_dict_and_nested_key() -> None:
    sd = _small_cnn().state_dict()
    assert find_state_dict(sd, Path("a.pt")).where == ""
    nested = {"model_ema": {"module": sd}, "model": sd}
    assert find_state_dict(nested, Path("a.pt")).where == "model"
    assert find_state_dict(nested, Path("a.pt")).others == ("model_ema.module",)
    assert find_state_dict(nested, Path("a.pt"), "model_ema.module").where == "model_ema.module"


def test_no_weights_ambiguous_and_bad_key_are_one_line_each() -> None:
    sd = _small_cnn().state_dict()
    with pytest.raises(ModelFileError, match=r"no weights found: it holds a dict with keys \['epoch', 'loss'\]"):
        find_state_dict({"epoch": 3, "loss": 0.5}, Path("ck.pt"))
    with pytest.raises(ModelFileError, match=r"several state_dicts \(generator, discriminator\).*--weights-key generator"):
        find_state_dict({"generator": sd, "discriminator": sd}, Path("gan.pt"))
    with pytest.raises(ModelFileError, match=r"--weights-key 'model.ema': model has no key 'ema'"):
        find_state_dict({"model": sd}, Path("ck.pt"), "model.ema")
    with pytest.raises(ModelFileError, match=r"--weights-key 'epoch' holds a int, not a state_dict"):
        find_state_dict({"model": sd, "epoch": 1}, Path("ck.pt"), "epoch")


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod.", "model."])
def test_wrapper_prefix_is_stripped_when_that_fits(prefix: str) -> None:
    src, dst = _small_cnn(), build_fresh()
    state = {prefix + k: v for k, v in src.state_dict().items()}
    notes = load_into(dst, find_state_dict(state, Path("ck.pt")), Path("ck.pt"), CLASS)
    assert any(prefix in n for n in notes)
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v)


def build_fresh() -> nn.Module:
    from fixtures.models import build

    return build("small_cnn", seed=11).eval()


def test_real_wrappers_dataparallel_and_compile_prefixes() -> None:
    model = _small_cnn()
    assert all(k.startswith("module.") for k in nn.DataParallel(model).state_dict())
    compiled = torch.compile(model)  # lazy: building the wrapper compiles nothing
    assert best_fit(compiled.state_dict(), build_fresh()).strip == "_orig_mod."


def test_wrong_architecture_names_the_closest_mismatches() -> None:
    src = _small_cnn().state_dict()
    state = dict(src)
    first = next(k for k in state if k.endswith("weight") and state[k].ndim == 4)
    state[first] = torch.zeros(*(d + 1 for d in state[first].shape))
    state.pop(next(k for k in state if k.endswith("bias")))
    state["head.extra.weight"] = torch.zeros(2)
    with pytest.raises(ModelClassError) as err:
        load_into(build_fresh(), find_state_dict(state, Path("ck.pt")), Path("ck.pt"), CLASS)
    text = str(err.value)
    assert "\n" not in text
    assert "1 missing in the checkpoint" in text and "1 not in the model (head.extra.weight)" in text
    assert f"1 of another shape ({first}: checkpoint " in text


def test_half_precision_weights_load_into_float32() -> None:
    src = _small_cnn()
    state = {k: (v.half() if v.is_floating_point() else v) for k, v in src.state_dict().items()}
    dst = build_fresh()
    notes = load_into(dst, find_state_dict(state, Path("ck.pt")), Path("ck.pt"), CLASS)
    assert any("float16" in n for n in notes)
    assert next(dst.parameters()).dtype == torch.float32


# ---- files, through the CLI ----------------------------------------------------------------------------------


def _save_files(tmp: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    sd = {k: v.contiguous() for k, v in _small_cnn().state_dict().items()}
    keys = sorted(sd)
    half = len(keys) // 2
    files = {"dataparallel": tmp / "dp.pth", "compiled": tmp / "compiled.pt", "lightning": tmp / "epoch=3.ckpt",
             "safetensors": tmp / "model.safetensors", "bin": tmp / "pytorch_model.bin",
             "sharded_safetensors": tmp / "sharded" / "model.safetensors.index.json",
             "sharded_bin": tmp / "shardedbin" / "pytorch_model.bin.index.json"}
    torch.save({"module." + k: v for k, v in sd.items()}, files["dataparallel"])
    torch.save({"_orig_mod." + k: v for k, v in sd.items()}, files["compiled"])
    torch.save({"epoch": 3, "global_step": 120, "state_dict": {"model." + k: v for k, v in sd.items()},
                "optimizer_states": [{"state": {}}], "lr_schedulers": []}, files["lightning"])
    save_file(sd, str(files["safetensors"]), metadata={"format": "pt"})
    torch.save(sd, files["bin"])
    for index, suffix, writer in ((files["sharded_safetensors"], "safetensors", lambda d, p: save_file(d, str(p))),
                                  (files["sharded_bin"], "bin", lambda d, p: torch.save(d, p))):
        index.parent.mkdir()
        shards = {f"model-0000{i + 1}-of-00002.{suffix}": {k: sd[k] for k in part}
                  for i, part in enumerate((keys[:half], keys[half:]))}
        for name, part in shards.items():
            writer(part, index.parent / name)
        index.write_text(json.dumps({"metadata": {}, "weight_map": {k: n for n, p in shards.items() for k in p}}))
    return files


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)  # --model-class fixtures.models:SmallCNN resolves from the current directory


@pytest.fixture(scope="module")
def checkpoint_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _save_files(tmp_path_factory.mktemp("checkpoints"))


@pytest.mark.parametrize("kind", ["dataparallel", "compiled", "lightning", "safetensors", "bin",
                                  "sharded_safetensors", "sharded_bin"])
def test_checkpoint_kinds_convert_and_match(kind: str, checkpoint_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m.onnx"
    proc = _run_cli("convert", str(checkpoint_files[kind]), "--model-class", CLASS, "--input-shape", "2x3x16x16",
                    "-o", str(out), "--no-manifest")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _onnx_matches(out, _small_cnn(), (2, 3, 16, 16)) < 1e-4


def test_bad_checkpoints_exit_with_one_line(tmp_path: Path) -> None:
    torch.save({"epoch": 1, "best_acc": 0.9}, tmp_path / "no_weights.pt")
    sd = _small_cnn().state_dict()
    torch.save({"generator": sd, "discriminator": sd}, tmp_path / "gan.pt")
    torch.save(nn.Linear(3, 4).state_dict(), tmp_path / "other.pt")
    (tmp_path / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    cases = [("no_weights.pt", 4, "no weights found"), ("gan.pt", 4, "--weights-key generator"),
             ("other.pt", 9, "does not fit fixtures.models:SmallCNN"),
             ("broken.safetensors", 4, "not a readable safetensors file")]
    for name, code, text in cases:
        proc = _run_cli("convert", str(tmp_path / name), "--model-class", CLASS, "--input-shape", "2x3x16x16",
                        "-o", str(tmp_path / f"{name}.onnx"))
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert proc.returncode == code, (name, proc.stderr[-1500:])
        assert text in lines[-1] and "Traceback" not in proc.stderr, (name, proc.stderr[-1500:])
        assert not (tmp_path / f"{name}.onnx").exists()


# ---- files made on a CUDA machine (../shared/fixtures/gpu_origin, see its README) ------------------------------


def _archive_weights(pt2: Path) -> dict[str, torch.Tensor]:
    """The weights stored in a .pt2 archive, read with zipfile + torch.load(map_location='cpu') -- not through
    crossport or torch.export -- keyed by their FQN."""
    import zipfile

    out = {}
    with zipfile.ZipFile(pt2) as zf:
        config = next(n for n in zf.namelist() if n.endswith("weights_config.json") or n.endswith("model_weights_config.json"))
        entries = json.loads(zf.read(config))["config"]
        prefix = config.rsplit("/", 1)[0] + "/"
        for fqn, entry in entries.items():
            data = zf.read(prefix + entry["path_name"])
            out[fqn] = data
    return out


@pytest.mark.skipif(not (GPU_ORIGIN / "mobilenet_v3_small_cuda.pt2").is_file(), reason="shared fixtures absent")
def test_cuda_exported_program_converts_on_cpu(tmp_path: Path) -> None:
    import keras
    import torchvision

    from converter import convert
    from converter.conversion import ConvertOptions

    out = tmp_path / "mnv3.keras"
    result = convert(str(GPU_ORIGIN / "mobilenet_v3_small_cuda.pt2"), ConvertOptions(output=str(out)))
    assert result.passed
    assert any("moved to the CPU" in n for n in result.report.notes), result.report.notes
    # Outside crossport: torchvision's architecture with the archive's weights, read from its raw storages.
    raw = _archive_weights(GPU_ORIGIN / "mobilenet_v3_small_cuda.pt2")
    ref = torchvision.models.mobilenet_v3_small().eval()
    state = ref.state_dict()
    for k, v in state.items():
        if k in raw:
            stored = torch.frombuffer(bytearray(raw[k]), dtype=v.dtype)[: v.numel()].reshape(v.shape)
            state[k] = stored
    assert sum(k in raw for k in state) >= len(list(ref.parameters()))
    ref.load_state_dict(state)
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    got = np.asarray(keras.models.load_model(out)(x.transpose(0, 2, 3, 1)))
    assert np.abs(got - want).max() <= 1e-4 * (1 + np.abs(want).max())


@pytest.mark.skipif(not (GPU_ORIGIN / "squeezenet1_1_cuda_checkpoint.pt").is_file(), reason="shared fixtures absent")
def test_cuda_training_checkpoint_converts_with_the_tutorial_keys(tmp_path: Path) -> None:
    import onnxruntime as ort
    import torchvision

    out = tmp_path / "sq.onnx"
    proc = _run_cli("convert", str(GPU_ORIGIN / "squeezenet1_1_cuda_checkpoint.pt"), "--model-class",
                    "torchvision.models:squeezenet1_1", "--input-shape", "1x3x224x224", "-o", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model_state_dict" in proc.stdout + proc.stderr
    ref = torchvision.models.squeezenet1_1().eval()
    ck = torch.load(GPU_ORIGIN / "squeezenet1_1_cuda_checkpoint.pt", map_location="cpu", weights_only=True)
    ref.load_state_dict(ck["model_state_dict"])
    err = _onnx_matches(out, ref, (2, 3, 224, 224))
    assert err < 1e-4, err
    del ort
