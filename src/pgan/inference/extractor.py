"""``FeatureExtractor``: images in, L2-normalised retrieval embeddings out, the whole test-time path.

Example::

    fx = FeatureExtractor("runs/demo/pgan/last.pt")
    emb = fx(["a.jpg", "b.jpg"])                  # (2, 512) float32, rows of unit length
    emb, boxes = fx.extract_with_parts(["a.jpg"])  # and the part boxes used, in image pixels

For each batch: decode (:mod:`pgan.inference.images`), part boxes -> top-D ->
masks (:mod:`pgan.inference.parts`), the network's ``F_fb`` (PyTorch, or an ONNX
export with ``runtime="onnx"``), optional flip test-time augmentation (the
embedding of the image plus that of its mirror, as ``pgan eval`` with
``run.flip_test=true``), L2 normalisation. With ``parts="model"`` (a model with a
part box head, where it is the default) no boxes are made before the network: it
returns its own beside the embedding (:meth:`FeatureExtractor.embed_prepared_parts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pgan.errors import PganError
from pgan.inference.images import ImageInput, decode, network_input
from pgan.inference.model import TrainedModel, load_model
from pgan.inference.onnx import OnnxNetwork  # onnxruntime itself is imported only when a network is loaded
from pgan.inference.parts import TestTimeParts, box_lists
from pgan.parts.boxfile import PartBox
from pgan.utils.device import resolve_device

__all__ = ["FeatureExtractor", "RUNTIMES", "head_part_boxes"]

RUNTIMES = ("torch", "onnx")


class FeatureExtractor:
    """Embeddings of images for a trained checkpoint (or, with ``runtime="onnx"``, its ONNX export).

    ``checkpoint``: a ``pgan train`` checkpoint; with ``runtime="onnx"`` an ``.onnx`` file written by
    :func:`pgan.inference.export_onnx` (its metadata carries the config), or a checkpoint whose
    export is given as ``onnx_path``. ``parts``: see :mod:`pgan.inference.parts`. ``threads``: the
    onnxruntime session's intra-op threads (0: its default, one per core; torch's are set globally).

    :meth:`prepare` (decoding, part boxes, resizing) and :meth:`embed_prepared` (the network) may
    run on different threads, as ``pgan serve`` does; :meth:`extract_with_parts` runs both.
    """

    def __init__(self, checkpoint: str | Path, parts: str | Path | None = None, device: str = "auto",
                 batch_size: int = 32, flip: bool = False, runtime: str = "torch",
                 onnx_path: str | Path | None = None, threads: int = 0) -> None:
        if runtime not in RUNTIMES:
            raise PganError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if batch_size < 1:
            raise PganError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.flip = flip
        self.runtime = runtime
        device_t = resolve_device(device, "device")
        if runtime == "torch":
            model = load_model(checkpoint, str(device_t))
            self.config, self.checkpoint = model.config, model.checkpoint
            self.model_fingerprint, self.embedding_dim = model.fingerprint, model.embedding_dim
            self.input_size, self.feat_size = model.input_size, model.feat_size
            self._forward = self._torch_forward_boxes
            self._model = model
        else:
            onnx_file = Path(onnx_path) if onnx_path is not None else Path(checkpoint)
            net = OnnxNetwork(onnx_file, threads=threads)
            if onnx_path is not None and Path(checkpoint).suffix != ".onnx":
                net.check_matches(load_model(checkpoint).fingerprint)  # the export must be of this checkpoint
            self.config, self.checkpoint = net.config, net.checkpoint
            self.model_fingerprint, self.embedding_dim = net.fingerprint, net.embedding_dim
            self.input_size, self.feat_size = net.input_size, net.feat_size
            self._forward = net.run_with_boxes
            self._model = net
            if net.has_box_head and parts is not None and str(parts) != "model":
                raise PganError(f"{onnx_file} is a box-head model's export: it takes images only and finds its "
                                f"own parts, so parts={str(parts)!r} needs runtime='torch' (or leave parts out)")
        self._device = str(device_t)
        self.parts_note: str | None = None  # why the part source of new photos is not the one asked for
        self.set_parts(parts)

    def set_parts(self, parts: str | Path | None, note: str | None = None) -> None:
        """Where the part boxes of images the model's part file lacks come from (see
        :mod:`pgan.inference.parts`); ``note`` records why, when the caller chose it in the user's stead."""
        self.parts_arg = parts  # recorded by indexes, so their searches box new photos the same way
        self.parts = TestTimeParts(self.config, parts, self._device, self.checkpoint)
        self.parts_note = note

    @property
    def model(self) -> TrainedModel | OnnxNetwork:
        """The loaded network: a :class:`~pgan.inference.model.TrainedModel` (``runtime="torch"``) or an
        :class:`~pgan.inference.onnx.OnnxNetwork` (``runtime="onnx"``)."""
        return self._model

    @property
    def new_photo_parts(self) -> str | None:
        """Where the part boxes of a new photo (an upload, a file outside the model's dataset) come from:
        ``"none needed"``, ``"grid"``, ``"proposals"``, ``"detector <file>"``; None when nothing can box
        it (a model trained on a part file, with no ``parts`` given)."""
        if self.parts.kind == "none":
            return "none needed"
        if self.parts.kind == "model":
            return "model"
        return "grid" if self.parts.kind == "grid" else self.parts.compute_name

    @property
    def parts_from_model(self) -> bool:
        """True when the network finds the parts itself (``parts="model"``): :meth:`prepare` makes no boxes."""
        return self.parts.kind == "model"

    def _torch_forward(self, images: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        return self._torch_forward_boxes(images, masks)[0]

    @torch.no_grad()
    def _torch_forward_boxes(self, images: np.ndarray, masks: np.ndarray | None
                             ) -> tuple[np.ndarray, np.ndarray | None]:
        dev = self._model.device
        m = torch.from_numpy(masks).to(dev) if masks is not None and self._model.needs_masks else None
        out = self._model.network(torch.from_numpy(images).to(dev), m)
        boxes = out.part_boxes.float().cpu().numpy() if out.part_boxes is not None else None
        return out.embedding.float().cpu().numpy(), boxes

    def embed_prepared(self, images: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
        """``(N, d)`` L2-normalised embeddings of :meth:`prepare`'s images and masks (flip TTA included)."""
        return self.embed_prepared_parts(images, masks)[0]

    def embed_prepared_parts(self, images: np.ndarray, masks: np.ndarray | None,
                             sizes: Sequence[tuple[int, int]] | None = None
                             ) -> tuple[np.ndarray, list[list[PartBox]] | None]:
        """:meth:`embed_prepared`, and the parts the network found itself (``parts="model"``) in the pixels of
        images of ``sizes`` ``(width, height)`` (None when the parts came from :meth:`prepare`, or without
        ``sizes``). With flip TTA the boxes are those of the unflipped image."""
        emb, found = self._forward(images, masks)
        emb = emb.astype(np.float32)
        if self.flip:
            fm = np.ascontiguousarray(masks[..., ::-1]) if masks is not None else None
            emb = emb + self._forward(np.ascontiguousarray(images[..., ::-1]), fm)[0].astype(np.float32)
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        boxes = head_part_boxes(found, sizes) if found is not None and sizes is not None else None
        return (emb / np.maximum(norm, 1e-12)).astype(np.float32), boxes

    def prepare_sized(self, images: Sequence[ImageInput]
                      ) -> tuple[np.ndarray, np.ndarray | None, list[list[PartBox]], list[tuple[int, int]]]:
        """:meth:`prepare` and each image's ``(width, height)`` (what the network's own boxes are scaled to)."""
        decoded = [decode(im) for im in images]
        parts = self.parts.boxes(decoded)  # no work (no boxes) when the model finds its own parts
        x = torch.stack([network_input(d, self.input_size) for d in decoded]).numpy()
        return x, self.parts.masks(parts, self.feat_size), box_lists(parts), [(d.width, d.height) for d in decoded]

    def prepare(self, images: Sequence[ImageInput]) -> tuple[np.ndarray, np.ndarray | None, list[list[PartBox]]]:
        """Network inputs of a batch: ``(N, 3, H, W)`` images, ``(N, D, h, w)`` masks (or None), boxes."""
        return self.prepare_sized(images)[:3]

    def extract_with_parts(self, images: Sequence[ImageInput] | ImageInput
                           ) -> tuple[np.ndarray, list[list[PartBox]]]:
        """``(N, d)`` float32 L2-normalised embeddings and the part boxes used for each image."""
        if isinstance(images, (np.ndarray, torch.Tensor)):
            images = [images] if images.ndim == 3 else list(images)
        elif isinstance(images, (str, Path)) or not isinstance(images, Sequence):
            images = [images]  # type: ignore[list-item]
        feats, boxes = [], []
        for i in range(0, len(images), self.batch_size):
            x, m, b, sizes = self.prepare_sized(images[i:i + self.batch_size])
            emb, own = self.embed_prepared_parts(x, m, sizes)
            feats.append(emb)
            boxes.extend(own if own is not None else b)
        if not feats:
            return np.zeros((0, self.embedding_dim), np.float32), []
        return np.concatenate(feats), boxes

    def __call__(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        return self.extract_with_parts(images)[0]


def head_part_boxes(boxes: np.ndarray, sizes: Sequence[tuple[int, int]]) -> list[list[PartBox]]:
    """A box head's ``(N, D, 5)`` output (x1, y1, x2, y2 in [0, 1], score; score 0 = absent part) as part
    boxes in the pixels of images of ``sizes`` ``(width, height)``, best first, absent parts left out."""
    out = []
    for row, (w, h) in zip(boxes, sizes):
        out.append([PartBox(float(b[0] * w), float(b[1] * h), float(b[2] * w), float(b[3] * h), float(b[4]),
                            "model") for b in row if b[4] > 0])
    return out
