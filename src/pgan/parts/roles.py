"""Which role a selected part box plays: a part of the vehicle's own ("identity"), one its whole
family shares ("shared"), or neither ("clutter": a proposal or detection on no annotated part).

Ground-truth boxes of the synthetic benchmark carry their role (written by the generator,
the one source of truth); other boxes (detector, proposals) take the role of the
ground-truth box they overlap most, at IoU >= 0.5 (pure).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pgan.parts.boxfile import PartBox, read_part_file

__all__ = ["CLUTTER", "box_iou", "box_roles", "match_truth", "selection_roles"]

CLUTTER = "clutter"


def box_iou(a: PartBox, b: PartBox) -> float:
    iw = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    ih = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = iw * ih
    union = a.area + b.area - inter
    return inter / union if union > 0 else 0.0


def match_truth(boxes: list[PartBox], truth: list[PartBox] | None, min_iou: float = 0.5) -> list[PartBox | None]:
    """For each box: itself if it has a role, else the best-overlapping ground-truth box with a role at
    IoU >= ``min_iou``, else ``None``."""
    out: list[PartBox | None] = []
    for b in boxes:
        if b.role is not None:
            out.append(b)
            continue
        best, match = 0.0, None
        for t in truth or []:
            iou = box_iou(b, t)
            if iou >= min_iou and iou > best and t.role is not None:
                best, match = iou, t
        out.append(match)
    return out


def box_roles(boxes: list[PartBox], truth: list[PartBox] | None, min_iou: float = 0.5) -> list[str | None]:
    """The role of each box: its own if it has one, else the best-overlapping ground-truth box's
    (IoU >= ``min_iou``), else ``"clutter"``; ``None`` where nothing is known (no ground truth)."""
    return [m.role if m is not None else (None if truth is None and b.role is None else CLUTTER)
            for b, m in zip(boxes, match_truth(boxes, truth, min_iou))]


def selection_roles(selected: Sequence[list[PartBox]], keys: Sequence[str], truth_file: str | Path | None
                    ) -> tuple[list[list[str | None]], list[list[str | None]]]:
    """For each image's selected boxes (``keys`` are the images' part-file keys): their roles (as
    :func:`box_roles`) and the class of the ground-truth part each one is (``None`` for clutter or
    without ground truth). ``truth_file`` is read once; a missing file means no ground truth."""
    truth = read_part_file(truth_file) if truth_file is not None and Path(truth_file).is_file() else {}
    roles, labels = [], []
    for boxes, key in zip(selected, keys):
        gt = truth.get(key)
        gt_boxes = gt.boxes if gt is not None else None
        roles.append(box_roles(boxes, gt_boxes))
        labels.append([m.label if m is not None else None for m in match_truth(boxes, gt_boxes)])
    return roles, labels
