"""Worker for ``converter.parity.isolated``: load one deployed artifact with its own runtime, then answer run
requests on stdin/stdout until stdin closes.

Run as a script (``python -I deployed_worker.py RUNTIME PATH``), never imported: it must not import crossport,
and ``keras``, ``tensorflow``, ``converter`` and ``onnx2torch`` are blocked so an artifact that still needs them
fails here as it would on a server. Messages are 8-byte little-endian lengths followed by an ``.npz`` payload:
requests hold ``in0..inN``; answers hold ``out0..outM`` and ``seconds`` (the inference alone), or ``error``.
"""
import io
import os
import sys
import time

BLOCKED = ("keras", "tensorflow", "converter", "onnx2torch", "crossport")


def _load(runtime, path):
    import torch

    if runtime == "aoti":
        import torch._inductor

        fn = torch._inductor.aoti_load_package(path)
        return lambda feeds: fn(*feeds)
    if runtime == "executorch":
        from executorch.runtime import Runtime

        method = Runtime.get().load_program(path).load_method("forward")
        return lambda feeds: method.execute(list(feeds))
    raise SystemExit(f"unknown runtime {runtime!r}")


def _read(stream, n):
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def main():
    runtime, path = sys.argv[1], sys.argv[2]
    for name in BLOCKED:
        sys.modules[name] = None  # import raises ImportError
    # The protocol owns the original stdout; anything the runtimes print (C++ included) goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    import numpy as np
    import torch

    torch.set_grad_enabled(False)
    call = _load(runtime, path)
    inp = sys.stdin.buffer
    while True:
        head = _read(inp, 8)
        if head is None:
            return
        data = np.load(io.BytesIO(_read(inp, int.from_bytes(head, "little"))))
        feeds = [torch.from_numpy(np.ascontiguousarray(data[f"in{i}"])) for i in range(len(data.files))]
        answer = {}
        try:
            t0 = time.perf_counter()
            result = call(feeds)
            seconds = time.perf_counter() - t0
            outs = result if isinstance(result, (list, tuple)) else [result]
            answer = {f"out{k}": o.detach().cpu().numpy() for k, o in enumerate(outs)}
            answer["seconds"] = np.float64(seconds)
        except Exception as err:  # noqa: BLE001 - sent back to the parent as one line
            text = str(err).strip().splitlines()
            answer = {"error": np.array(f"{type(err).__name__}: {text[0][:300] if text else ''}")}
        buf = io.BytesIO()
        np.savez(buf, **answer)
        payload = buf.getvalue()
        out.write(len(payload).to_bytes(8, "little") + payload)
        out.flush()


if __name__ == "__main__":
    main()
