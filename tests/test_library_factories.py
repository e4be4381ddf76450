"""Published architectures by name (#14): ``timm:NAME`` and ``transformers:Class`` built offline from configs, as a
source of their own or as the ``--model-class`` of a checkpoint (a Hugging Face directory's ``model.safetensors``);
dict / ``ModelOutput`` outputs keep their names. Each converted file is compared outside crossport."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")
transformers = pytest.importorskip("transformers")

BERT = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4,
        "intermediate_size": 64, "max_position_embeddings": 64}


def _cli(*args: str) -> subprocess.CompletedProcess:
    from click.testing import CliRunner

    from converter.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def _ort(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def test_timm_name_converts_with_the_seeded_random_init(tmp_path: Path) -> None:
    out = tmp_path / "r.onnx"
    proc = _cli("convert", "timm:test_resnet", "--input-shape", "2x3x32x32", "-o", str(out), "--no-manifest")
    assert proc.returncode == 0, proc.stderr[-2000:]
    torch.manual_seed(0)  # crossport seeds torch with --seed (0) before building a factory
    ref = timm.create_model("test_resnet", pretrained=False).eval()
    x = np.random.default_rng(2).standard_normal((3, 3, 32, 32)).astype(np.float32)
    got = next(iter(_ort(out, {"input": x}).values()))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() < 1e-4


def test_unknown_names_and_missing_configs_are_one_line(tmp_path: Path) -> None:
    proc = _cli("convert", "timm:resnet_does_not_exist", "--input-shape", "1x3x32x32", "-o", str(tmp_path / "a.onnx"))
    assert proc.returncode == 9 and "timm has no model 'resnet_does_not_exist'" in proc.stderr
    proc = _cli("convert", "transformers:BertModel", "--input-shape", "1x8", "-o", str(tmp_path / "b.onnx"))
    assert proc.returncode == 9 and "needs a config" in proc.stderr
    proc = _cli("convert", "transformers:BertModel", "--model-kwargs", '{"config": "no/such/dir"}',
                "--input-shape", "1x8", "-o", str(tmp_path / "c.onnx"))
    assert proc.returncode == 9 and "never downloads" in proc.stderr
    assert not any(tmp_path.iterdir())


def test_transformers_checkpoint_directory_with_named_outputs(tmp_path: Path) -> None:
    """The shape of a published model: ``config.json`` + ``model.safetensors`` from ``save_pretrained``; converted
    with the class and the directory as config, token inputs by name, ``ModelOutput`` fields as named outputs."""
    torch.manual_seed(5)
    model = transformers.BertModel(transformers.BertConfig(**BERT)).eval()
    model.save_pretrained(tmp_path / "bert", safe_serialization=True)
    assert (tmp_path / "bert" / "model.safetensors").is_file()
    out = tmp_path / "bert.onnx"
    proc = _cli("convert", str(tmp_path / "bert" / "model.safetensors"), "--model-class", "transformers:BertModel",
                "--model-kwargs", f'{{"config": "{tmp_path / "bert"}"}}', "--input-shape", "input_ids=2x12",
                "--input-shape", "attention_mask=2x12", "--input-dtype", "int64", "-o", str(out), "--no-manifest")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ids = np.random.default_rng(3).integers(0, 100, (3, 12)).astype(np.int64)
    mask = np.ones((3, 12), np.int64)
    mask[0, 8:] = 0
    got = _ort(out, {"input_ids": ids, "attention_mask": mask})
    assert set(got) == {"last_hidden_state", "pooler_output"}
    with torch.no_grad():
        want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
    for name in got:
        assert np.abs(got[name] - want[name].numpy()).max() < 1e-4, name
