"""Run in a fresh interpreter with plain torch only: load a converted artifact, compare it with the Keras
outputs saved by the test, train one optimizer step and check the weights moved.

Usage: python _plain_torch_check.py ARTIFACT KIND DATA.npz EXPECTED_TRAINABLE
"""
import sys

import numpy as np
import torch

path, kind, data_path, expected = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
data = np.load(data_path)
inputs = [torch.from_numpy(data[f"in{i}"]) for i in range(int(data["n_in"]))]
wanted = [data[f"out{i}"] for i in range(int(data["n_out"]))]
if kind == "pt2":
    module = torch.export.load(path).module()
elif kind == "torchscript":
    module = torch.jit.load(path)
else:  # an emitted source directory: model.py + weights.pt
    sys.path.insert(0, path)
    from model import Model  # noqa: E402

    module = Model()
    module.load_state_dict(torch.load(f"{path}/weights.pt", weights_only=True))
    module.eval()
with torch.no_grad():
    out = module(*inputs)
outs = out if isinstance(out, (tuple, list)) else (out,)
assert len(outs) == len(wanted), (len(outs), len(wanted))
err = max(float(np.max(np.abs(o.numpy() - w))) for o, w in zip(outs, wanted))
assert err < 1e-3, f"max error {err}"
params = [p for p in module.parameters() if p.requires_grad]
count = sum(p.numel() for p in params)
assert count == expected, f"trainable {count} != keras {expected}"
before = [p.detach().clone() for p in params]
opt = torch.optim.SGD(params, lr=0.1)
out = module(*inputs)
outs = out if isinstance(out, (tuple, list)) else (out,)
loss = sum((o.float() ** 2).mean() for o in outs)
loss.backward()
opt.step()
changed = sum(int(not torch.equal(b, p.detach())) for b, p in zip(before, params))
assert changed > 0, "no weight changed after one optimizer step"
leaked = [m for m in ("converter", "onnx2torch", "crossport", "tensorflow", "keras") if m in sys.modules]
assert not leaked, f"imported {leaked}"
print(f"OK err={err:.2e} trainable={count} changed={changed}/{len(params)}")
