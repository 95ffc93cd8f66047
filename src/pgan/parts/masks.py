"""Boxes -> masks at the backbone's feature-map resolution (pure).

A feature cell ``(r, c)`` of an ``fh x fw`` map covers the image rectangle
``[c*W/fw, (c+1)*W/fw) x [r*H/fh, (r+1)*H/fh)``. Two ways to rasterise (``mode``,
the config key ``data.mask_mode``):

* ``"any"`` (default): binary; a box switches on every cell it overlaps by more than
  ``min_overlap`` of the cell's side in each axis (default 0: any overlap), so a small
  part never vanishes between cells. The authors loaded masks already at 14x14 and do
  not say how they rasterised; this choice is ours.
* ``"fraction"``: each cell holds the share of its area the box covers, in [0, 1] (a
  box covering a whole cell gives 1, a quarter of it 0.25). Mask-guided pooling then
  weights each cell by that share, so a sticker that is a third of one glass cell no
  longer pools as the whole cell (issue 18). ``min_overlap`` does not apply.
"""

from __future__ import annotations

import math

import numpy as np

from pgan.parts.boxfile import PartBox
from pgan.utils.grid import grid_layout

__all__ = ["MASK_MODES", "box_to_mask", "boxes_to_masks", "grid_boxes"]

MASK_MODES = ("any", "fraction")


def _axis_cover(lo: float, hi: float, n: int) -> np.ndarray:
    """The share of each of ``n`` unit cells that the interval ``[lo, hi]`` (cell units) covers."""
    edges = np.arange(n, dtype=np.float64)
    return np.clip(np.minimum(hi, edges + 1) - np.maximum(lo, edges), 0.0, 1.0)


def box_to_mask(box: PartBox, img_w: int, img_h: int, fh: int, fw: int,
                min_overlap: float = 0.0, mode: str = "any") -> np.ndarray:
    """One ``(fh, fw)`` float32 mask: in {0, 1} (``mode="any"``) or each cell's covered share
    (``mode="fraction"``); empty if the box has no area inside the image.

    Example: a box over pixels x 0-16, y 0-8 of a 32 x 32 image on a 2 x 2 map gives
    ``[[1, 0], [0, 0]]`` with ``"any"`` and ``[[0.5, 0], [0, 0]]`` with ``"fraction"``.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode {mode!r} must be one of {MASK_MODES}")
    mask = np.zeros((fh, fw), dtype=np.float32)
    x1, x2 = max(box.x1, 0.0), min(box.x2, float(img_w))
    y1, y2 = max(box.y1, 0.0), min(box.y2, float(img_h))
    if x2 <= x1 or y2 <= y1:
        return mask
    if mode == "fraction":
        cover_y = _axis_cover(y1 / img_h * fh, y2 / img_h * fh, fh)
        cover_x = _axis_cover(x1 / img_w * fw, x2 / img_w * fw, fw)
        return np.outer(cover_y, cover_x).astype(np.float32)
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
                   min_overlap: float = 0.0, mode: str = "any") -> np.ndarray:
    """``(d, fh, fw)`` masks (see :func:`box_to_mask`) for the first ``d`` boxes; missing parts are
    all-zero (padding)."""
    out = np.zeros((d, fh, fw), dtype=np.float32)
    for i, box in enumerate(boxes[:d]):
        out[i] = box_to_mask(box, img_w, img_h, fh, fw, min_overlap, mode)
    return out


def grid_boxes(width: int, height: int, d: int = 8) -> list[PartBox]:
    """The ``d`` cells of :func:`pgan.utils.grid.grid_masks` as boxes in image pixels (row-major, score 1,
    label ``grid``)."""
    rows, cols = grid_layout(d)
    xs = [width * j / cols for j in range(cols + 1)]
    ys = [height * i / rows for i in range(rows + 1)]
    return [PartBox(xs[j], ys[i], xs[j + 1], ys[i + 1], 1.0, "grid") for i in range(rows) for j in range(cols)]
