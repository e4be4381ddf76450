"""``--to onnx``: the exported ONNX file is the artifact; the PyTorch vs onnxruntime hop is its verification."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from converter.conversion.job import ConversionResult, ConvertOptions, Job
from converter.conversion.ledger import Ledger
from converter.conversion.routes._tf import finish
from converter.conversion.sources import OnnxSource
from converter.formats import Format


@dataclass(frozen=True)
class OnnxFileRoute:
    name: ClassVar[str] = "onnx-file"

    def applies(self, fmt: Format, target: str, options: ConvertOptions) -> str:
        return "" if target == "onnx" else "the ONNX file itself is the artifact only for --to onnx"

    def run(self, src: OnnxSource, job: Job, ledger: Ledger, last: bool) -> ConversionResult:
        return finish(src, job, ledger, src.onnx_path, None)
