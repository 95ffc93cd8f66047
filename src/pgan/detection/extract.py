"""Run a trained part detector over a whole dataset -> the part-box file (resumable).

The loop itself (skip what the file holds, decode on a thread pool, append a line per
image) is :func:`pgan.parts.extract.run_extraction`; this module supplies the detector's
boxes.

Example::

    report = extract_parts("runs/detector/last.pt", "synth", "data/synth",
                           detector_part_file("runs/detector/last.pt", "runs/detector"))
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from pgan.detection.model import load_detector, predict
from pgan.errors import PganError
from pgan.parts.boxfile import PartBox, check_part_file_owner
from pgan.parts.extract import BoxesFn, ExtractReport, dataset_images, run_extraction
from pgan.parts.selection import select_top_d

__all__ = ["detector_boxes_fn", "detector_part_file", "extract_parts"]


def detector_boxes_fn(model, classes: list[str], d: int, nms: float, min_score: float) -> BoxesFn:
    """A :data:`BoxesFn` from a trained detector: NMS, score threshold, top-``d`` by score."""
    def fn(images: list[torch.Tensor]) -> list[list[PartBox]]:
        preds = predict(model, [im.float().div_(255) for im in images], classes, nms=nms, min_score=min_score)
        out = []
        for p in preds:
            boxes = [PartBox(float(b[0]), float(b[1]), float(b[2]), float(b[3]), float(s), lab)
                     for b, s, lab in zip(p.boxes, p.scores, p.labels)]
            out.append(select_top_d(boxes, d))
        return out

    return fn


def detector_part_file(checkpoint: str | Path, folder: str | Path) -> Path:
    """``<folder>/parts_detector-<fingerprint>.jsonl``: a name that says which detector wrote the boxes
    (the fingerprint is the first 12 hex digits of the checkpoint file's SHA-1)."""
    h = hashlib.sha1()
    with open(checkpoint, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return Path(folder) / f"parts_detector-{h.hexdigest()[:12]}.jsonl"


def extract_parts(checkpoint: str | Path, dataset: str, root: str | Path, out: str | Path, d: int = 8,
                  nms: float = 0.45, min_score: float = 0.05, batch_size: int = 8, device: str = "cpu",
                  progress: bool = True, workers: int = 2) -> ExtractReport:
    """Run a trained part detector over every image of ``dataset`` and write its top-``d`` boxes."""
    check_part_file_owner(out, "detector")
    if d < 1:
        raise PganError(f"D (boxes per image) must be >= 1, got {d}")
    if not 0.0 < nms <= 1.0:
        raise PganError(f"NMS IoU threshold must be in (0, 1], got {nms}")
    model, cfg, _ = load_detector(checkpoint, device)
    fn = detector_boxes_fn(model, cfg.classes, d, nms, min_score)
    return run_extraction(dataset_images(dataset, root), out, fn, batch_size, progress, workers)
