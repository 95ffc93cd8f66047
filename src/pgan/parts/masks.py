"""Boxes -> binary masks at the backbone's feature-map resolution (pure).

A feature cell ``(r, c)`` of an ``fh x fw`` map covers the image rectangle
``[c*W/fw, (c+1)*W/fw) x [r*H/fh, (r+1)*H/fh)``. A box switches on every cell
it overlaps by more than ``min_overlap`` of the cell's side in each axis
(default 0: any overlap), so a small part never vanishes between cells. The
authors loaded masks already at 14x14 and do not say how they rasterised;
this choice is ours.
"""

from __future__ import annotations

import math

import numpy as np

from pgan.parts.boxfile import PartBox
from pgan.utils.grid import grid_layout


def box_to_mask(box: PartBox, img_w: int, img_h: int, fh: int, fw: int,
                min_overlap: float = 0.0) -> np.ndarray:
    """One ``(fh, fw)`` float32 mask in {0, 1}; empty if the box has no area inside the image."""
    mask = np.zeros((fh, fw), dtype=np.float32)
    x1, x2 = max(box.x1, 0.0), min(box.x2, float(img_w))
    y1, y2 = max(box.y1, 0.0), min(box.y2, float(img_h))
    if x2 <= x1 or y2 <= y1:
        return mask
    # Box edges in cell units; shrink by min_overlap so barely-touched cells stay off.
    cx1, cx2 = x1 / img_w * fw + min_overlap, x2 / img_w * fw - min_overlap
    cy1, cy2 = y1 / img_h * fh + min_overlap, y2 / img_h * fh - min_overlap
    c0, c1 = int(math.floor(cx1)), int(math.ceil(cx2))
    r0, r1 = int(math.floor(cy1)), int(math.ceil(cy2))
    c0, r0 = max(c0, 0), max(r0, 0)
    c1, r1 = min(max(c1, c0 + 1), fw), min(max(r1, r0 + 1), fh)
    mask[r0:r1, c0:c1] = 1.0
    return mask


def boxes_to_masks(boxes: list[PartBox], img_w: int, img_h: int, fh: int, fw: int, d: int,
                   min_overlap: float = 0.0) -> np.ndarray:
    """``(d, fh, fw)`` masks for the first ``d`` boxes; missing parts are all-zero (padding)."""
    out = np.zeros((d, fh, fw), dtype=np.float32)
    for i, box in enumerate(boxes[:d]):
        out[i] = box_to_mask(box, img_w, img_h, fh, fw, min_overlap)
    return out


def grid_boxes(width: int, height: int, d: int = 8) -> list[PartBox]:
    """The ``d`` cells of :func:`pgan.utils.grid.grid_masks` as boxes in image pixels (row-major, score 1,
    label ``grid``)."""
    rows, cols = grid_layout(d)
    xs = [width * j / cols for j in range(cols + 1)]
    ys = [height * i / rows for i in range(rows + 1)]
    return [PartBox(xs[j], ys[i], xs[j + 1], ys[i + 1], 1.0, "grid") for i in range(rows) for j in range(cols)]
