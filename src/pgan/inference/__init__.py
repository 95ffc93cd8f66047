"""Inference: a trained checkpoint -> embeddings of new images, and its ONNX export.

* :func:`load_model`: the trained network (eval mode), its config and fingerprint.
* :class:`FeatureExtractor`: images -> L2-normalised embeddings, running the
  model's test-time part pipeline (:mod:`pgan.inference.parts`).
* :func:`export_onnx`, :func:`quantize_int8`, :class:`OnnxNetwork`
  (:mod:`pgan.inference.onnx`; onnx and onnxruntime are imported only when used).

Arrows: inference reads a checkpoint through :mod:`pgan.models.trained` and imports nothing from
``pgan.engine`` (the training code).
"""

from pgan.inference.extractor import FeatureExtractor
from pgan.inference.images import ImageInput, decode
from pgan.inference.model import TrainedModel, load_model
from pgan.inference.onnx import OnnxNetwork, export_onnx
from pgan.inference.parts import TestTimeParts
from pgan.inference.quantize import quantize_int8

__all__ = ["FeatureExtractor", "ImageInput", "OnnxNetwork", "TestTimeParts", "TrainedModel", "decode",
           "export_onnx", "load_model", "quantize_int8"]
