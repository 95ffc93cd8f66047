"""Box average precision at an IoU threshold, Pascal-VOC style (pure numpy).

``box_ap`` follows the VOC2010+ protocol: per class, detections of all images
are sorted by score; a detection is a true positive when its best-overlapping
ground-truth box of the same class (IoU >= ``iou_threshold``) is not yet taken,
otherwise a false positive (duplicates count as false positives). Ground truth
marked ``difficult`` is neither a hit nor a miss. AP is the area under the
all-point interpolated precision/recall curve. Coordinates are continuous
(no VOC "+1" pixel convention). The mean is over classes with ground truth.

Example::

    gt = [GroundTruth(np.array([[0, 0, 10, 10]]), ["logo"])]
    det = [Detections(np.array([[0, 0, 10, 9]]), np.array([0.9]), ["logo"])]
    box_ap(det, gt).mean   # 1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass
class GroundTruth:
    """The annotated boxes ``(N, 4)`` of one image (x1, y1, x2, y2), their labels and difficult flags."""

    boxes: np.ndarray
    labels: Sequence[str]
    difficult: np.ndarray | None = None


@dataclass
class Detections:
    """The detected boxes ``(M, 4)`` of one image, their scores ``(M,)`` and labels."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: Sequence[str]


@dataclass
class APResult:
    """AP per class (classes with ground truth), the mean over them, and ground-truth counts."""

    per_class: dict[str, float]
    mean: float
    num_gt: dict[str, int] = field(default_factory=dict)
    iou_threshold: float = 0.5

    def to_dict(self) -> dict:
        return {"mAP": self.mean, "iou_threshold": self.iou_threshold, "per_class": self.per_class,
                "num_gt": self.num_gt}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a (N, 4)`` with every box in ``b (M, 4)`` -> ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the all-point interpolated precision/recall curve (VOC2010+)."""
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _class_ap(cls: str, detections: Sequence[Detections], truth: Sequence[GroundTruth],
              iou_threshold: float) -> tuple[float, int]:
    gt_boxes, gt_diff, taken = [], [], []
    npos = 0
    for g in truth:
        sel = np.array([lab == cls for lab in g.labels], dtype=bool)
        diff = (np.zeros(len(g.labels), dtype=bool) if g.difficult is None
                else np.asarray(g.difficult, dtype=bool))[sel]
        gt_boxes.append(np.asarray(g.boxes, dtype=np.float64).reshape(-1, 4)[sel])
        gt_diff.append(diff)
        taken.append(np.zeros(int(sel.sum()), dtype=bool))
        npos += int((~diff).sum())
    entries = [(float(s), i, np.asarray(b, dtype=np.float64))
               for i, d in enumerate(detections)
               for b, s, lab in zip(np.asarray(d.boxes).reshape(-1, 4), d.scores, d.labels) if lab == cls]
    if npos == 0:
        return float("nan"), 0
    # Stable sort by descending score: ties keep image order, so the result is deterministic.
    entries.sort(key=lambda e: -e[0])
    tp = np.zeros(len(entries))
    fp = np.zeros(len(entries))
    for k, (_, img, box) in enumerate(entries):
        boxes = gt_boxes[img]
        if len(boxes) == 0:
            fp[k] = 1
            continue
        ious = iou_matrix(box[None], boxes)[0]
        j = int(np.argmax(ious))
        if ious[j] < iou_threshold:
            fp[k] = 1
        elif gt_diff[img][j]:
            continue  # matched a difficult box: ignored
        elif not taken[img][j]:
            tp[k], taken[img][j] = 1, True
        else:
            fp[k] = 1
    tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
    recall = tp_c / npos
    precision = tp_c / np.maximum(tp_c + fp_c, np.finfo(np.float64).eps)
    return voc_ap(recall, precision), npos


def box_ap(detections: Sequence[Detections], truth: Sequence[GroundTruth], iou_threshold: float = 0.5,
           classes: Sequence[str] | None = None) -> APResult:
    """AP per class and its mean; ``detections[i]`` and ``truth[i]`` belong to the same image."""
    if len(detections) != len(truth):
        raise ValueError(f"{len(detections)} detection lists for {len(truth)} annotated images")
    if classes is None:
        classes = sorted({lab for g in truth for lab in g.labels})
    per_class, num_gt = {}, {}
    for cls in classes:
        ap, npos = _class_ap(cls, detections, truth, iou_threshold)
        num_gt[cls] = npos
        if npos:
            per_class[cls] = ap
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return APResult(per_class, mean, num_gt, iou_threshold)
