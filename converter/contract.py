"""The layout contract inside the artifact, so a renamed or copied file still verifies without its sidecar.

``crossport verify`` needs to know which layout each input/output has on each side (NCHW source, NHWC target, ...);
the sidecar ``<output>.crossport.json`` says so, but a user who renames the model or ships it alone loses the
sidecar. The same facts -- layouts, route, opset, source, and for ``.keras`` the Keras layer -> PyTorch module path
map -- are therefore also written into the artifact itself, where each format keeps metadata that its own loader
ignores:

- ``.keras``, ``.pt2``, TorchScript: all zip archives; a ``crossport.json`` entry (for the PyTorch files under the
  archive's ``extra/``, so ``torch.jit.load(_extra_files=...)`` / ``torch.export.load(extra_files=...)`` see it);
- ONNX: a ``metadata_props`` entry ``crossport.contract`` (kept by ``onnx.load``/``onnx.save`` round trips);
- TFLite: a flatbuffer ``metadata`` entry ``crossport.contract`` pointing at a buffer with the JSON;
- SavedModel: ``assets.extra/crossport.json`` (TF Serving's directory for files the graph does not load).

Reading and writing need no framework: ``zipfile``, ``onnx`` for ONNX, LiteRT's flatbuffer schema for TFLite.
"""
from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

KIND = "crossport.contract"
ENTRY = "crossport.json"  # file name inside zip archives and SavedModel assets.extra
KEY = "crossport.contract"  # ONNX metadata_props key, TFLite metadata name
SCHEMA_VERSION = 1

Row = tuple[str, str, str]  # (tensor name, source layout, target layout)


@dataclass(frozen=True)
class Contract:
    """What a converted model promises about its boundary, plus where its layers came from."""

    inputs: tuple[Row, ...]
    outputs: tuple[Row, ...]
    route: tuple[str, ...] = ()
    opset: int | None = None
    source: str = ""
    layers: tuple[tuple[str, str], ...] = ()  # (Keras layer name, PyTorch module path) where they differ

    def to_dict(self) -> dict[str, Any]:
        def rows(rs: Sequence[Row]) -> list[dict[str, str]]:
            return [{"name": n, "source_layout": s, "target_layout": t} for n, s, t in rs]

        return {"kind": KIND, "schema_version": SCHEMA_VERSION, "inputs": rows(self.inputs),
                "outputs": rows(self.outputs), "route": list(self.route), "opset": self.opset,
                "source": self.source, "layers": dict(self.layers)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @property
    def layer_paths(self) -> dict[str, str]:
        return dict(self.layers)


def from_dict(data: Mapping[str, Any]) -> Contract:
    """A contract from a conversion report (the sidecar) or an embedded ``crossport.contract``; both have
    ``inputs``/``outputs`` rows with ``name``, ``source_layout`` and ``target_layout``."""

    def rows(key: str) -> tuple[Row, ...]:
        out = []
        for t in data.get(key) or ():
            src = str(t.get("source_layout", "none"))
            tgt = str(t.get("target_layout", src))
            out.append((str(t.get("name", "")), src, src if tgt == "as source" else tgt))
        return tuple(out)

    layers = data.get("layers") or {}
    return Contract(rows("inputs"), rows("outputs"), tuple(data.get("route") or ()), data.get("opset"),
                    str(data.get("source") or ""), tuple((str(k), str(v)) for k, v in dict(layers).items()))


def parse(text: str | bytes) -> Contract | None:
    """None when ``text`` is not a crossport contract or report (a foreign entry of the same name)."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or "inputs" not in data or not str(data.get("kind", "")).startswith("crossport."):
        return None
    return from_dict(data)


# ---- writing --------------------------------------------------------------------------------------------------


def embed(path: Path, target: str, contract: Contract) -> bool:
    """Store ``contract`` inside the (not yet published) artifact at ``path``; the model itself is untouched.
    False when the file could not take it (the sidecar still says the same; the conversion stands)."""
    text = contract.to_json()
    try:
        if target in ("keras", "pt2", "torchscript"):
            _zip_add(path, _zip_entry(path, target), text)
        elif target == "onnx":
            _onnx_add(path, text)
        elif target == "tflite":
            if not _tflite_fill(path, text.encode()):
                _tflite_add(path, text.encode())
        elif target == "saved_model":
            extra = path / "assets.extra"
            extra.mkdir(exist_ok=True)
            (extra / ENTRY).write_text(text + "\n")
        else:
            return False
    except Exception:  # noqa: BLE001 - metadata is a convenience; every writer above replaces files atomically
        return False
    return True


def _zip_entry(path: Path, target: str) -> str:
    """``crossport.json`` at the top of a ``.keras``; ``<archive>/extra/crossport.json`` in PyTorch archives, where
    torch's own loaders look for extra files."""
    if target == "keras":
        return ENTRY
    with zipfile.ZipFile(path) as z:
        root = z.namelist()[0].split("/", 1)[0]
    return f"{root}/extra/{ENTRY}"


def _zip_add(path: Path, entry: str, text: str) -> None:
    """Appended to a copy that then replaces the file: an append that fails half-way would leave no valid zip."""
    import shutil

    def write(tmp: Path) -> None:
        shutil.copyfile(path, tmp)
        with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_STORED) as z:
            if entry not in z.namelist():  # zip cannot replace an entry in place
                z.writestr(entry, text)

    _replace(path, write)


def _onnx_add(path: Path, text: str) -> None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)  # external tensors stay where they are
    kept = [p for p in model.metadata_props if p.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=KEY, value=text)
    _replace(path, lambda tmp: onnx.save(model, str(tmp)))


def _tflite_fill(path: Path, blob: bytes) -> bool:
    """Store ``blob`` in the file's ``crossport.contract`` buffer in place, when that buffer's bytes are the last of
    the file (crossport's direct writer reserves it there): only the vector's length and bytes change, every other
    object keeps its position. False when the file has no such buffer (the TF converter's files)."""
    import mmap
    import struct

    from ai_edge_litert import schema_py_generated as schema

    size = path.stat().st_size
    with path.open("r+b") as f:
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as view:
            model = schema.Model.GetRootAsModel(view, 0)
            metas = [model.Metadata(k) for k in range(model.MetadataLength())]
            found = [m for m in metas if _text(m.Name()) == KEY]
            if len(found) != 1 or found[0].Buffer() >= model.BuffersLength():
                return False
            table = model.Buffers(found[0].Buffer())._tab  # noqa: SLF001 - the vector's position in the file
            field = table.Offset(4)  # Buffer.data
            if not field:
                return False
            start, length = table.Vector(field), table.VectorLen(field)
            del model, metas, found, table
        if start + length != size:
            return False
        # Bytes, then length, then the end of the file: a write that fails half-way leaves the old length over
        # bytes that parse as no contract (``embed`` then reports it), never a vector past the end of the file.
        f.seek(start)
        f.write(blob)
        f.seek(start - 4)
        f.write(struct.pack("<I", len(blob)))
        f.truncate(start + len(blob))
    return True


def _tflite_add(path: Path, blob: bytes) -> None:
    """Append a buffer and a ``metadata`` entry naming it (the TFLite schema's place for producer metadata). The
    flatbuffer is re-packed with each weight copied once, 16-byte aligned, into a builder sized up front (the
    object API's own ``Pack`` re-copied a ViT-B/16 file ~5 times: 15 s, 1.6 GB)."""
    import flatbuffers
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema

    from converter.tflite_writer.graph import AlignedBuffer, add_bytes, finish

    raw = bytearray(path.stat().st_size)
    with path.open("rb") as f:
        f.readinto(raw)
    model = schema.ModelT.InitFromPackedBuf(raw, 0)
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or ()):
        return  # weights stored after the flatbuffer (a >2 GB file): re-packing would drop them; no contract
    builder = flatbuffers.Builder(len(raw) + len(blob) + (1 << 20))

    def moved(data: Any) -> AlignedBuffer:
        if data is None or not len(data):
            return AlignedBuffer()
        return AlignedBuffer(add_bytes(builder, memoryview(np.ascontiguousarray(data, dtype=np.uint8)).cast("B")))

    model.buffers = [moved(b.data) for b in model.buffers] + [moved(np.frombuffer(blob, dtype=np.uint8))]
    entry = schema.MetadataT()
    entry.name = KEY
    entry.buffer = len(model.buffers) - 1
    model.metadata = [m for m in (model.metadata or []) if _text(m.name) != KEY] + [entry]
    _replace(path, lambda tmp: finish(builder, model, tmp))


def _replace(path: Path, write: Any) -> None:
    """``write(tmp)`` beside ``path``, then one atomic rename: the artifact is either the old file or the new one."""
    tmp = path.with_name(f".{path.name}.contract")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name or "")


# ---- reading --------------------------------------------------------------------------------------------------


def read(path: str | Path) -> Contract | None:
    """The contract embedded in the model at ``path``, or None when it holds none (or is not ours to read)."""
    path = Path(path)
    try:
        if path.is_dir():
            entry = path / "assets.extra" / ENTRY
            return parse(entry.read_bytes()) if entry.is_file() else None
        if not path.is_file():
            return None
        with path.open("rb") as f:
            head = f.read(8)
        if zipfile.is_zipfile(path):
            return _zip_read(path)
        if head[4:8] == b"TFL3":
            return _tflite_read(path)
        if path.suffix.lower() == ".onnx":
            return _onnx_read(path)
    except Exception:  # noqa: BLE001 - the model itself loaded; unreadable metadata just means "no contract"
        return None
    return None


def _zip_read(path: Path) -> Contract | None:
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if n == ENTRY or n.endswith(f"/extra/{ENTRY}")]
        return parse(z.read(names[0])) if names else None


def _onnx_read(path: Path) -> Contract | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for prop in model.metadata_props:
        if prop.key == KEY:
            return parse(prop.value)
    return None


def _tflite_read(path: Path) -> Contract | None:
    from ai_edge_litert import schema_py_generated as schema

    buf = path.read_bytes()
    model = schema.Model.GetRootAsModel(buf, 0)
    for k in range(model.MetadataLength()):
        meta = model.Metadata(k)
        if _text(meta.Name()) == KEY:
            return parse(model.Buffers(meta.Buffer()).DataAsNumpy().tobytes())
    return None


def from_infos(inputs: Sequence[Any], outputs: Sequence[Any], route: Sequence[str], opset: int | None, source: str,
               layers: Mapping[str, str] | None = None) -> Contract:
    """From the report's ``TensorInfo`` rows (one description of the boundary for the report and the artifact)."""

    def rows(infos: Sequence[Any]) -> tuple[Row, ...]:
        return tuple((t.name, t.source_layout, t.source_layout if t.target_layout == "as source" else t.target_layout)
                     for t in infos)

    return Contract(rows(inputs), rows(outputs), tuple(route), opset, source, tuple(sorted((layers or {}).items())))
