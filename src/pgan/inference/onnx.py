"""ONNX export of the test-time network (images, masks -> F_fb) and an onnxruntime runner.

The exported graph has a dynamic batch axis; its inputs are ``images``
``(N, 3, H, W)`` float32 (normalised) and, for variants that take part masks,
``masks`` ``(N, D, h, w)`` float32; its output is ``embedding`` ``(N, d)``, before
L2 normalisation. The file's metadata carries the training config, the model
fingerprint and the feature size, so ``FeatureExtractor("model.onnx",
runtime="onnx")`` needs nothing else.

A model with a part box head (``model.box_head``) exports the graph that finds its own parts: its input
is ``images`` only, its outputs ``embedding`` and ``part_boxes`` ``(N, D, 5)`` (x1, y1, x2, y2 in [0, 1]
of the image, score; score 0 = absent part), so a service makes one call per batch and can still show
the parts it used.

``quantize_int8`` writes onnxruntime's static int8 quantisation (QDQ format, per
channel) calibrated on real images through the same preprocessing; its
fingerprint is the float model's with ``-int8`` appended, since its embeddings
differ (a gallery must be indexed and searched with the same one).

Example::

    export_onnx("runs/demo/pgan/last.pt", "pgan.onnx")
    quantize_int8("pgan.onnx", "pgan-int8.onnx", calibration=["a.jpg", "b.jpg", ...])
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from pgan.errors import IndexMismatchError, PganError
from pgan.inference.model import TrainedModel, config_from_dict, load_model
from pgan.utils.atomic import atomic_open

__all__ = ["OnnxNetwork", "export_onnx", "save_model", "set_metadata"]

log = logging.getLogger(__name__)


class _TestTimeNet(torch.nn.Module):
    def __init__(self, model: TrainedModel) -> None:
        super().__init__()
        self.net = model.network
        self.box_head = model.network.part_box_head is not None
        self.needs_masks = model.needs_masks and not self.box_head

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.net(images, masks if self.needs_masks else None)
        return (out.embedding, out.part_boxes) if self.box_head else out.embedding


def _metadata(model: TrainedModel, precision: str) -> dict[str, str]:
    fp = model.fingerprint if precision == "fp32" else f"{model.fingerprint}-{precision}"
    return {"pgan_config": json.dumps(model.config.to_dict()), "pgan_fingerprint": fp,
            "pgan_embedding_dim": str(model.embedding_dim), "pgan_feat_size": json.dumps(list(model.feat_size)),
            "pgan_checkpoint": str(model.checkpoint), "pgan_precision": precision}


def set_metadata(proto, meta: dict[str, str]) -> None:
    """Replace the ``metadata_props`` of an ONNX model proto with ``meta``."""
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def save_model(proto, out: Path) -> Path:
    """Write an ONNX model proto to ``out`` atomically; returns ``out``."""
    with atomic_open(out, "wb") as fh:
        fh.write(proto.SerializeToString())
    return out


def export_onnx(checkpoint: str | Path, out: str | Path, opset: int = 17) -> Path:
    """Export the test-time network of ``checkpoint`` to ``out`` (written atomically)."""
    import onnx

    model = load_model(checkpoint, "cpu")
    net = _TestTimeNet(model).eval()
    h, w = model.input_size
    fh, fw = model.feat_size
    images = torch.zeros(2, 3, h, w)
    args: tuple = (images,)
    names = ["images"]
    axes = {"images": {0: "batch"}, "embedding": {0: "batch"}}
    outputs = ["embedding"]
    if net.box_head:
        outputs.append("part_boxes")
        axes["part_boxes"] = {0: "batch"}
    if net.needs_masks:
        args = (images, torch.ones(2, model.config.data.num_parts, fh, fw))
        names.append("masks")
        axes["masks"] = {0: "batch"}
    out = Path(out)
    tmp = out.with_name(f".{out.name}.export.tmp")
    try:
        # The TorchScript exporter (dynamo=False) handles this graph as is; the new exporter is the default
        # since torch 2.9 and warns about the old one. The tracer's warning is about the mask-shape check,
        # a constant for a fixed input size.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(net, args, str(tmp), input_names=names, output_names=outputs,
                              dynamic_axes=axes, opset_version=opset, dynamo=False)
        proto = onnx.load(str(tmp))
    finally:
        tmp.unlink(missing_ok=True)
    set_metadata(proto, _metadata(model, "fp32"))
    return save_model(proto, out)


class OnnxNetwork:
    """An onnxruntime session over a pgan export; ``run(images, masks) -> (N, d)`` (not normalised)."""

    def __init__(self, path: str | Path, threads: int = 0) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise PganError(f"ONNX model {path} does not exist")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads  # 0: onnxruntime's default (one per core)
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for a foreign or corrupt file
            raise PganError(f"cannot load ONNX model {path}: {str(exc).splitlines()[0]}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        if "pgan_fingerprint" not in meta:
            raise PganError(f"{path} is not a pgan export (no pgan metadata; write it with 'pgan export onnx')")
        self.path = path
        self.config = config_from_dict(json.loads(meta["pgan_config"]), str(path))
        self.fingerprint = meta["pgan_fingerprint"]
        self.embedding_dim = int(meta["pgan_embedding_dim"])
        self.feat_size = tuple(json.loads(meta["pgan_feat_size"]))
        self.checkpoint = Path(meta["pgan_checkpoint"])
        self.precision = meta.get("pgan_precision", "fp32")
        self.input_size = (int(self.config.data.input_size[0]), int(self.config.data.input_size[1]))
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.has_box_head = "part_boxes" in [o.name for o in self.session.get_outputs()]

    def check_matches(self, fingerprint: str) -> None:
        """:class:`IndexMismatchError` unless this export was made from the model with ``fingerprint``."""
        if self.fingerprint.removesuffix("-int8") != fingerprint:
            raise IndexMismatchError(f"ONNX model {self.path} was exported from another model "
                                     f"(fingerprint {self.fingerprint}, expected {fingerprint})")

    def run(self, images: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        """``(N, d)`` embeddings (not normalised)."""
        return self.run_with_boxes(images, masks)[0]

    def run_with_boxes(self, images: np.ndarray, masks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The embeddings and, for a box-head model's export, its own ``(N, D, 5)`` part boxes (else None)."""
        feeds = {"images": np.ascontiguousarray(images, dtype=np.float32)}
        if "masks" in self.input_names:
            if masks is None:
                raise PganError(f"{self.path} needs part masks")
            feeds["masks"] = np.ascontiguousarray(masks, dtype=np.float32)
        if not self.has_box_head:
            return self.session.run(["embedding"], feeds)[0], None
        emb, boxes = self.session.run(["embedding", "part_boxes"], feeds)
        return emb, boxes
