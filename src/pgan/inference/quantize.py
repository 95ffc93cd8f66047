"""Static int8 quantisation of an exported network (onnxruntime), calibrated on training images.

Kept apart from :mod:`pgan.inference.onnx` because it runs the ONNX network through
:class:`pgan.inference.extractor.FeatureExtractor` (to prepare the calibration inputs),
which itself uses :mod:`pgan.inference.onnx`: imports point one way.

A box-head model's export (:mod:`pgan.inference.onnx`) keeps its box decoding in float: the nodes the
exporter names ``.../decoder/...`` (peak picking compares a max-pooled map with the map itself, which
quantised copies of the two would break, and box edges decide which mask cells switch on).

The Part Attention Module's masked softmax also stays in float (its nodes other than convolutions and
matrix products, ``.../pam/...``): it sets the scores of absent parts to ``-inf``, and a calibration set
with an absent part gave that tensor an infinite range, so onnxruntime computed a NaN zero point for it
(seen with a box-head model, which often finds fewer parts than ``D``). It is a handful of numbers per
image, so float costs nothing measurable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgan.errors import PganError
from pgan.inference.extractor import FeatureExtractor
from pgan.inference.onnx import save_model, set_metadata

__all__ = ["quantize_int8"]

_PAM_QUANTISED = ("Conv", "Gemm", "MatMul")  # the PAM's ops that int8 pays for; the rest stays in float


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over prepared batches."""

    def __init__(self, batches: list[dict[str, np.ndarray]]) -> None:
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.batches, None)


def quantize_int8(onnx_path: str | Path, out: str | Path, calibration: Sequence, parts: str | Path | None = None,
                  batch_size: int = 16) -> Path:
    """Static int8 quantisation of an fp32 export, calibrated on ``calibration`` images (paths or arrays)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise PganError("int8 quantisation needs calibration images; none were given")
    fx = FeatureExtractor(onnx_path, parts=parts, runtime="onnx", device="cpu", batch_size=batch_size)
    names = fx.model.input_names
    batches = []
    for i in range(0, len(calibration), batch_size):
        x, m, _ = fx.prepare(calibration[i:i + batch_size])
        feed = {"images": x}
        if "masks" in names:
            feed["masks"] = m
        batches.append(feed)
    out = Path(out)
    pre = out.with_name(f".{out.name}.pre.tmp")
    raw = out.with_name(f".{out.name}.q.tmp")
    try:
        quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=True)
        keep_float = [n.name for n in onnx.load(str(pre)).graph.node if "/decoder/" in n.name or (
            "/pam/" in n.name and n.op_type not in _PAM_QUANTISED)]
        quantize_static(str(pre), str(raw), _Calibration(batches), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float)
        proto = onnx.load(str(raw))
    finally:
        pre.unlink(missing_ok=True)
        raw.unlink(missing_ok=True)
    meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    meta["pgan_fingerprint"] = meta["pgan_fingerprint"] + "-int8"
    meta["pgan_precision"] = "int8"
    set_metadata(proto, meta)
    return save_model(proto, out)
