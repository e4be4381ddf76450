"""Real architectures and real interruptions, through the installed command."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from converter import ConvertOptions, convert

CROSSPORT = [sys.executable, "-c", "from converter.cli import main; main()"]


def test_torchvision_resnet18_pt2_to_keras(tmp_path: Path) -> None:
    """The foundation's acceptance case: ResNet-18 ExportedProgram -> .keras, verified, plain-loadable."""
    import keras
    import torch
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    ep = torch.export.export(model, (torch.randn(2, 3, 64, 64),),
                             dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    pt2 = tmp_path / "resnet18.pt2"
    torch.export.save(ep, str(pt2))
    out = tmp_path / "resnet18.keras"
    result = convert(str(pt2), ConvertOptions(output=str(out)))
    assert result.passed, result.report.format_text()
    assert result.report.trainable_params["pytorch"] == result.report.trainable_params["keras"] == 11_689_512
    reloaded = keras.models.load_model(str(out))
    assert reloaded.input_shape == (None, 64, 64, 3)
    names = {layer.name for layer in reloaded.layers}
    assert {"conv1", "bn1", "layer4_1_conv2", "fc"} <= names  # module paths, in a form every Keras backend takes
    from converter import contract

    assert contract.read(out).layer_paths["layer4_1_conv2"] == "layer4.1.conv2"
    assert not any(type(op).__name__ == "Transpose" for op in reloaded.operations)


@pytest.mark.parametrize(("sig", "stage"), [(signal.SIGINT, "exporting to ONNX"), (signal.SIGTERM, "building the Keras"),
                                            (signal.SIGINT, "timing keras"), (signal.SIGTERM, "timing keras")])
def test_interrupt_leaves_nothing(sig: int, stage: str, tmp_path: Path) -> None:
    """Interrupted at a named step, the command exits 130 and leaves nothing. Timing runs inside TensorFlow, which
    turns the KeyboardInterrupt into its own exception type (the timing step tolerates runtime errors): the signal
    must still stop the conversion. Many timed runs keep the process inside that step when the signal lands."""
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out.keras"
    proc = subprocess.Popen([*CROSSPORT, "convert", "fixtures.models:small_cnn", "--input-shape", "2x3x16x16",
                             "--latency-runs", "20000", "-o", str(out)],
                            cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    assert proc.stderr is not None
    for line in proc.stderr:
        seen.append(line)
        if stage in line:
            break
    assert proc.poll() is None, "conversion finished before it could be interrupted: " + "".join(seen)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    err = "".join(seen) + err
    assert proc.returncode == 130, err[-1000:]
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists()
    assert not list(tmp_path.iterdir())
