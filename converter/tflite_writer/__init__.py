"""crossport's direct ``.tflite`` writer: a functional Keras 3 model (as the builder makes it: NHWC, layouts
folded) written straight to a TFLite flatbuffer, one registered handler per Keras operation, each weight written into the file from its own array.

Why: the TF converter path (trace, freeze variables into a GraphDef, MLIR conversion) took 32 s and 7.9 GB
beyond the model for ViT-B/16; the graph the builder produced already *is* a TFLite graph, op for op. Anything
the writer does not map raises :class:`WriterRefused` before a file exists, and the caller falls back to the TF
converter for the whole model.
"""
from converter.tflite_writer.walk import write_model
from converter.tflite_writer.graph import WriterRefused

__all__ = ["WriterRefused", "write_model"]
