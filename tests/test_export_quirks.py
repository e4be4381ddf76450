"""Export quirks of real architectures, in miniature: ConvNeXt (fixtures.models.ConvNeXtStyle) and torchvision's
VisionTransformer. The batch stays dynamic, parameters stay trainable under their PyTorch names, results verify."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def test_convnext_style_keeps_batch_parameters_and_names(tmp_path: Path) -> None:
    import torch

    from converter import ConvertOptions, convert
    from fixtures.models import ConvNeXtStyle

    torch.manual_seed(0)
    model = ConvNeXtStyle().eval()
    x = torch.randn(2, 3, 16, 16)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "m.pt2"))
    out = tmp_path / "m.keras"
    result = convert(str(tmp_path / "m.pt2"), ConvertOptions(output=str(out)))
    assert result.passed, result.report.format_text()
    assert result.report.dynamic_batch  # no Shape -> Range -> Gather over the batch (adaptive pool on a permute)

    import keras

    kmodel = keras.models.load_model(str(out))
    assert kmodel.inputs[0].shape[0] is None
    torch_counts: dict[str, int] = {}
    for name, p in model.named_parameters():
        owner = name.rsplit(".", 1)[0] if not name.endswith("layer_scale") else name
        torch_counts[owner] = torch_counts.get(owner, 0) + p.numel()
    keras_counts = {layer.name: sum(int(np.prod(w.shape)) for w in layer.trainable_weights)
                    for layer in kmodel.layers if layer.trainable_weights}
    # zero biases are kept (not dropped as "optional"), equal LayerNorm weights are not merged into one name,
    # and layer_scale is a trainable 1x1 depthwise kernel named after its block.
    assert sum(keras_counts.values()) == sum(torch_counts.values())
    for owner, count in torch_counts.items():
        keras_name = owner.removesuffix(".layer_scale").replace(".", "_")
        if owner.endswith("layer_scale"):
            owners = {o.replace(".", "_") for o in torch_counts}
            scale_layers = [n for n in keras_counts if n.startswith(keras_name) and n not in owners]
            assert scale_layers, f"no Keras layer carries {owner}"
        else:
            assert keras_counts.get(keras_name) == count, (owner, keras_counts)


def test_vision_transformer_keeps_a_dynamic_batch(tmp_path: Path) -> None:
    """nn.MultiheadAttention folds the heads into the batch axis (B*H -> B, H) and the class token is expanded
    to the batch: both must follow the batch at run time, checked at batch 2 and 3 by verification."""
    import torch
    from torchvision.models.vision_transformer import VisionTransformer

    from converter import ConvertOptions, convert

    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
                              num_classes=5).eval()
    with torch.no_grad():
        for p in model.parameters():  # torchvision zero-initialises the head: outputs would be trivially 0
            p.normal_(0.0, 0.3)
    x = torch.randn(2, 3, 32, 32)
    assert model(x).abs().max() > 0.1
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(ep, str(tmp_path / "vit.pt2"))
    result = convert(str(tmp_path / "vit.pt2"), ConvertOptions(output=str(tmp_path / "vit.keras")))
    assert result.passed, result.report.format_text()
    assert result.report.dynamic_batch
    assert {s["shapes"][0][0] for s in result.report.input_sets} == {1, 2}
    # class_token and encoder.pos_embedding stay trainable (Embedding tables), so the counts agree
    counts = result.report.trainable_params
    assert counts["pytorch"] == counts["keras"] == sum(p.numel() for p in model.parameters())


def test_folded_weight_transposes_are_written_block_by_block(tmp_path: Path, monkeypatch) -> None:
    """A Linear on a 3-D input exports as MatMul with the weight's Transpose folded into a transposed numpy view;
    the save writes it through small contiguous blocks (``torch_onnx._transposed_weights_written_in_blocks``) -- same bytes as a
    plain transpose, checked here with blocks of 2 rows so a block boundary falls inside the weight."""
    import onnx
    import onnxruntime as ort
    import torch
    from onnx import numpy_helper

    from converter.adapters import torch_onnx

    monkeypatch.setattr(torch_onnx, "_BLOCK_BYTES", 2 * 37 * 4)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(37, 11), torch.nn.GELU(), torch.nn.Linear(11, 37)).eval()
    x = torch.randn(2, 5, 37)
    path = tmp_path / "m.onnx"
    torch_onnx.export(model, (x,), path, n_outputs=1, external_data=True)
    assert (tmp_path / "m.onnx.data").is_file()
    proto = onnx.load(str(path))
    weights = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    first = model[0].weight.detach().numpy()
    assert any(w.shape == first.T.shape and np.array_equal(w, first.T) for w in weights)  # written transposed
    got = ort.InferenceSession(str(path)).run(None, {proto.graph.input[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, model(x).detach().numpy(), rtol=1e-5, atol=1e-6)


def test_a_blockwise_weight_writes_to_a_buffer_in_memory_too() -> None:
    """``tofile`` on something without a file descriptor (what onnx_ir's own base class allows) writes the same
    bytes through ``write``."""
    import io

    import onnx_ir as ir

    from converter.adapters import torch_onnx

    weight = np.arange(12 * 7, dtype=np.float32).reshape(12, 7).T  # a transposed view, as constant folding leaves
    model = ir.Model(ir.Graph([], [], nodes=[], initializers=[ir.Value(name="w", const_value=ir.Tensor(weight))]),
                     ir_version=10)
    torch_onnx._transposed_weights_written_in_blocks(model)
    tensor = model.graph.initializers["w"].const_value
    assert type(tensor).__name__ == "_BlockwiseTensor"
    buffer = io.BytesIO()
    tensor.tofile(buffer)
    assert buffer.getvalue() == np.ascontiguousarray(weight).tobytes()


def test_registry_signatures_on_demand_export_the_same_graph(tmp_path: Path, monkeypatch) -> None:
    """torchlib's registry skips inferring ~560 signatures (``torch_onnx._registry_signatures_on_demand``); the
    graph builder infers the ones it calls. The exported file is byte for byte the one with every signature
    inferred up front, for a model whose ops take both torchlib's compiled functions (``hardswish``, ``div``: their
    signatures are inferred when called) and its trace-only ones."""
    import contextlib

    import torch
    from torch.onnx._internal.exporter import _schemas

    from converter.adapters import torch_onnx

    torch.manual_seed(0)
    model, x = _mixed().eval(), torch.randn(2, 3, 8, 8)
    inferred: list[str] = []
    real_infer = _schemas.op_signature_from_function

    def counting(func, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - counts signature inferences
        inferred.append(getattr(func, "__name__", ""))
        return real_infer(func, *args, **kwargs)

    monkeypatch.setattr(_schemas, "op_signature_from_function", counting)
    # An export earlier in this process may have cached signatures on the functions (the graph builder keeps them):
    # forget them for this test, so the lazy export has to infer the ones it calls.
    from onnxscript.function_libs.torch_lib import registration

    for _, entry in registration.default_registry.items():
        for function in (*entry.overloads, *entry.complex):
            if "_pt_onnx_signature" in vars(function):
                monkeypatch.delattr(function, "_pt_onnx_signature")
    torch_onnx.export(model, (x,), tmp_path / "lazy.onnx", n_outputs=1)
    on_demand = len(inferred)
    inferred.clear()
    monkeypatch.setattr(torch_onnx, "_registry_signatures_on_demand", contextlib.nullcontext)
    torch_onnx.export(model, (x,), tmp_path / "eager.onnx", n_outputs=1)
    assert 0 < on_demand < 50 < len(inferred)  # only the functions the graph calls, against every registered one
    assert (tmp_path / "lazy.onnx").read_bytes() == (tmp_path / "eager.onnx").read_bytes()


def test_rewrite_rules_gated_by_root_op_export_the_same_graph(tmp_path: Path, monkeypatch) -> None:
    """The rewriter's rules decline a node of another op type before matching
    (``adapters.rewrite_rule_gate.gated_by_root_op``): the exported file is byte for byte the one with every rule
    tried on every node, for a model whose graph the rules do rewrite (a flatten through ``view``'s computed shape,
    a multiply by one)."""
    import torch
    from onnxscript import rewriter

    from converter.adapters import rewrite_rule_gate, torch_onnx

    class Rewritten(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mixed = _mixed()
            self.conv = torch.nn.Conv2d(3, 2, 3)
            self.fc = torch.nn.Linear(72, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv(x) * 1.0
            return self.fc(y.view(y.size(0), -1)) + self.mixed(x)[:, :3]

    from onnxscript.rewriter import _rewrite_rule

    rules = list(rewriter._DEFAULT_REWRITE_RULES)  # noqa: SLF001
    gated = [rewrite_rule_gate.gated_by_root_op(r) for r in rules]
    assert sum(g is not r for g, r in zip(gated, rules)) >= 20  # most rules have a constant root op
    assert all("try_rewrite" not in vars(r) for r in rules)  # onnxscript's own rule objects are left as they were
    fired: list[str] = []
    real_try = _rewrite_rule.RewriteRule.try_rewrite

    def counting(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202 - records the rules that rewrite
        done = real_try(self, *args, **kwargs)
        if done is not None:
            fired.append(str(self.name))
        return done

    monkeypatch.setattr(_rewrite_rule.RewriteRule, "try_rewrite", counting)
    torch.manual_seed(0)
    model, x = Rewritten().eval(), torch.randn(2, 3, 8, 8)
    torch_onnx.export(model, (x,), tmp_path / "gated.onnx", n_outputs=1)
    gated_fired, fired[:] = list(fired), []
    monkeypatch.setattr(torch_onnx, "gated_by_root_op", lambda rule: rule)
    torch_onnx.export(model, (x,), tmp_path / "plain.onnx", n_outputs=1)
    assert "MaterializeReshapeShape" in gated_fired and sorted(gated_fired) == sorted(fired)
    assert (tmp_path / "gated.onnx").read_bytes() == (tmp_path / "plain.onnx").read_bytes()


def _mixed():  # noqa: ANN202 - a torch module built on demand (torch imports lazily in these tests)
    """Conv, GELU, LayerNorm, hardswish, division, softmax and where: ops that take torchlib's compiled
    (``@script``) functions as well as its trace-only ones."""
    import torch

    class Mixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.norm = torch.nn.LayerNorm(4)
            self.fc = torch.nn.Linear(4, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = torch.nn.functional.gelu(self.conv(x)).permute(0, 2, 3, 1)
            y = torch.nn.functional.hardswish(torch.clamp(self.norm(y), -1.0, 1.0)).mean(dim=(1, 2)) / 3.0
            return torch.softmax(self.fc(y), dim=-1) + torch.where(y[:, :1] > 0, 1.0, 0.5)


    return Mixed()


_EXPORT_IN_A_FRESH_PROCESS = """
import sys, torch
from pathlib import Path
sys.path.insert(0, TESTS)
from converter.adapters import torch_onnx, torchlib_lazy
from test_export_quirks import _mixed
if sys.argv[1] == "eager":
    torchlib_lazy._applies = lambda: False
torch.manual_seed(0)
model, x = _mixed().eval(), torch.randn(2, 3, 8, 8)
torch_onnx.export(model, (x,), Path(sys.argv[2]), n_outputs=1)
made = {id(f): f for name, m in list(sys.modules.items()) if name.startswith("onnxscript.function_libs.torch_lib")
        for f in vars(m).values() if type(f).__name__ == "LazyScript"}.values()
compiled = sum(f._lazy_ir is not None for f in made)
import hashlib, onnxscript
digest = hashlib.sha256()
functions = {(name, key): f for name, m in list(sys.modules.items()) if name.startswith("onnxscript.function_libs.torch_lib")
             for key, f in vars(m).items() if isinstance(f, onnxscript.OnnxFunction)}
for (name, key), f in sorted(functions.items()):  # every compiled function, lazy ones compiled now
    digest.update(f"{name}.{key} {f.function_ir.domain} {f.op_signature} {f.source}".encode())
    digest.update(f.to_function_proto().SerializeToString(deterministic=True))
print(len(functions), digest.hexdigest())
print(len(made), compiled)
"""


def test_torchlib_functions_compiled_on_first_use_export_the_same_file(tmp_path: Path) -> None:
    """torchlib imported with its ``@script`` functions compiled on first use (``converter.adapters.torchlib_lazy``)
    exports byte for byte the file of an import that compiles every one, and compiles only the few the graph
    calls; compiled afterwards, every one has the eager compile's IR, source and signature. Each in a fresh process:
    the module is imported once per process."""
    import os
    import subprocess
    import sys

    code = _EXPORT_IN_A_FRESH_PROCESS.replace("TESTS", repr(str(Path(__file__).parent)))
    counts, digests = {}, {}
    for mode in ("lazy", "eager"):
        env = {**os.environ, "PYTHONHASHSEED": "0"}  # a signature prints its type sets in hash order
        done = subprocess.run([sys.executable, "-c", code, mode, str(tmp_path / f"{mode}.onnx")],
                              capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        counts[mode] = tuple(int(n) for n in done.stdout.split()[-2:])
        digests[mode] = done.stdout.split()[-4:-2]
    assert (tmp_path / "lazy.onnx").read_bytes() == (tmp_path / "eager.onnx").read_bytes()
    # every compiled function, compiled late, has the IR, source and signature of the eager compile
    assert digests["lazy"] == digests["eager"] and int(digests["lazy"][0]) >= 40, digests
    made, compiled = counts["lazy"]
    assert made >= 20 and 0 < compiled <= 5, counts  # hardswish and div compiled; the rest never
    assert counts["eager"] == (0, 0)


def test_registry_shortcut_stands_down_when_dispatch_reads_signatures(monkeypatch) -> None:
    """If a torch version's dispatcher reads the registry's signatures (in a comprehension too), they are inferred
    up front as torch does it: the shortcut only applies while nothing in the dispatching module reads one."""
    from torch.onnx._internal.exporter import _dispatching, _registration

    from converter.adapters import torch_onnx

    original = _registration.OnnxDecompMeta.__post_init__
    with torch_onnx._registry_signatures_on_demand():  # noqa: SLF001
        assert _registration.OnnxDecompMeta.__post_init__ is not original  # torch 2.14: applies

    def dispatch_by_signature(metas):  # noqa: ANN001, ANN202 - stands for a dispatcher matching on signatures
        return [m for m in metas if m.signature is not None]

    dispatch_by_signature.__module__ = _dispatching.__name__
    monkeypatch.setattr(_dispatching, "dispatch_by_signature", dispatch_by_signature, raising=False)
    with torch_onnx._registry_signatures_on_demand():  # noqa: SLF001
        assert _registration.OnnxDecompMeta.__post_init__ is original
    assert _registration.OnnxDecompMeta.__post_init__ is original


def test_an_uncompiled_torchlib_function_answers_the_domain_and_compiles_for_more() -> None:
    """While the registry lists torchlib's functions, an uncompiled one's ``function_ir`` is its opset's domain;
    anything more compiles it (no recursion through the listing flag), and outside the listing it is the real IR."""
    import sys

    import pytest

    from converter.adapters import torchlib_lazy

    with torchlib_lazy.compiled_on_first_use():
        pass
    cls = torchlib_lazy.lazy_script_class()
    lazy = [f for name, m in list(sys.modules.items()) if name.startswith("onnxscript.function_libs.torch_lib")
            for f in vars(m).values() if type(f) is cls and f._lazy_ir is None]  # noqa: SLF001
    if not lazy:
        pytest.skip("torchlib was imported before the lazy import could apply in this process")
    function = lazy[0]
    cls.listing = True
    try:
        listed = function.function_ir
        assert listed.domain == function.opset.domain and function._lazy_ir is None  # noqa: SLF001
        assert listed.name == function.__name__ and function._lazy_ir is not None  # noqa: SLF001 - compiled
    finally:
        cls.listing = False
    real = function.function_ir
    assert type(real).__name__ == "IRFunction" and real.domain == function.opset.domain
    assert function.op_signature is not None and function.to_function_proto().name == function.__name__


def test_adaptive_pool_contiguity_is_read_without_a_guard(tmp_path: Path) -> None:
    """``_contiguous_before_adaptive_pools`` reads contiguity from sizes and strides: ``Tensor.is_contiguous()`` on a
    symbolic batch records a guard in the program's shape environment, and recording one imports torch's compiler
    stack (16 MB resident in every conversion of a CNN with an adaptive pool). A permuted input still gets its
    copy; an NCHW one does not."""
    import torch
    import torch.nn as nn

    from converter.adapters.pt2_load import load_exported_program
    from converter.adapters.torch_onnx import _contiguous_before_adaptive_pools

    class Pools(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            y = self.conv(x)
            return nn.functional.adaptive_avg_pool2d(y, 1), nn.functional.adaptive_avg_pool2d(y.permute(0, 2, 3, 1), 1)

    saved = torch.export.export(Pools().eval(), (torch.randn(2, 3, 8, 8),),
                                dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(saved, str(tmp_path / "pools.pt2"))
    ep, _ = load_exported_program(tmp_path / "pools.pt2")  # as a conversion reads it
    env = next(n.meta["val"] for n in ep.graph.nodes if n.op == "placeholder" and n.name == "x").fake_mode.shape_env
    guards = len(env.guards)
    _contiguous_before_adaptive_pools(ep)
    assert len(env.guards) == guards
    pools = [n for n in ep.graph.nodes if "adaptive_avg_pool2d" in str(n.target)]
    fed_by = [str(p.args[0].target) for p in pools]
    assert fed_by[0] == "aten.conv2d.default" and fed_by[1] == "aten.clone.default", fed_by
