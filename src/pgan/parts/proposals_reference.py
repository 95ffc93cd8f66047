"""The first, loop-based implementation of the saliency proposals, kept as the reference.

:func:`pgan.parts.proposals.propose_boxes` computes the same boxes with numpy array operations
(the tests compare the two on synthetic and real photos, and ``benchmarks/proposal_speed.py``
times both in one run). Nothing in the library calls this module; it is here so the comparison
can always be made against the code that wrote the part files already on disk.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pgan.parts.boxfile import PartBox

__all__ = ["components_reference", "propose_boxes_reference"]

WORK_SIZE = 128
THRESHOLDS = (80.0, 88.0, 94.0)


def _box_filter(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a ``(2r+1)^2`` window (edges replicated), via a summed-area table; ``(H, W, C)``."""
    p = np.pad(img, ((r + 1, r), (r + 1, r), (0, 0)), mode="edge").astype(np.float64)
    sat = p.cumsum(0).cumsum(1)
    k = 2 * r + 1
    h, w = img.shape[:2]
    s = sat[k:k + h, k:k + w] - sat[:h, k:k + w] - sat[k:k + h, :w] + sat[:h, :w]
    return (s / (k * k)).astype(np.float32)


def _local_median(img: np.ndarray) -> np.ndarray:
    """The per-channel median of a window of about 1/8 of the image side around each pixel.

    Computed at half resolution and upsampled. Unlike a mean, the median ignores a part that
    covers less than half the window, so the part stands out with no halo around it.
    """
    h, w = img.shape[:2]
    # uint8, not float: the same values (a resized uint8 image), a quarter of the bytes to copy and partition.
    small = np.asarray(Image.fromarray(img.clip(0, 255).astype(np.uint8)).resize(
        (max(4, w // 2), max(4, h // 2)), Image.BILINEAR), dtype=np.uint8)
    r = max(2, round(min(small.shape[:2]) / 16))
    padded = np.pad(small, ((r, r), (r, r), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * r + 1, 2 * r + 1), axis=(0, 1))
    k = (2 * r + 1) ** 2  # odd, so the middle element is the median
    med = np.partition(windows.reshape(*small.shape, k), k // 2, axis=-1)[..., k // 2]
    return np.asarray(Image.fromarray(np.ascontiguousarray(med)).resize((w, h), Image.BILINEAR),
                      dtype=np.float32)


def components_reference(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """4-connected components of a boolean ``(H, W)`` map -> ``(x1, y1, x2, y2, pixels)``, x2/y2 exclusive.

    Run-length union-find: rows are split into runs of ``True``; runs overlapping a run
    of the row above join its component.
    """
    d = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    sr, sc = np.nonzero(d == 1)
    _, ec = np.nonzero(d == -1)
    n = len(sr)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    row_start = np.searchsorted(sr, np.arange(mask.shape[0] + 1))
    for r in range(1, mask.shape[0]):
        a, a_end = row_start[r - 1], row_start[r]
        b, b_end = row_start[r], row_start[r + 1]
        while a < a_end and b < b_end:
            if sc[a] < ec[b] and sc[b] < ec[a]:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
            if ec[a] < ec[b]:
                a += 1
            else:
                b += 1
    comps: dict[int, list[int]] = {}
    for i in range(n):
        root = find(i)
        x1, y1, x2, y2, px = comps.get(root, [sc[i], sr[i], ec[i], sr[i] + 1, 0])
        comps[root] = [min(x1, sc[i]), min(y1, sr[i]), max(x2, ec[i]), max(y2, sr[i] + 1),
                       px + int(ec[i] - sc[i])]
    return [tuple(int(v) for v in c) for c in comps.values()]  # type: ignore[misc]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    import torchvision

    keep = torchvision.ops.nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), iou)
    return keep.numpy()


def propose_boxes_reference(image: np.ndarray, max_boxes: int = 16, nms: float = 0.45) -> list[PartBox]:
    """The loop implementation of :func:`pgan.parts.proposals.propose_boxes` (same boxes; slower)."""
    h0, w0 = image.shape[:2]
    scale = WORK_SIZE / max(h0, w0)
    w, h = max(8, round(w0 * scale)), max(8, round(h0 * scale))
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR), dtype=np.float32)
    fine = _box_filter(img, 1)
    sal = np.abs(fine - _local_median(fine)).sum(-1)
    sat = np.pad(sal.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)

    def mean(x1: int, y1: int, x2: int, y2: int) -> float:
        return (sat[y2, x2] - sat[y1, x2] - sat[y2, x1] + sat[y1, x1]) / max(1, (x2 - x1) * (y2 - y1))

    cands, scores = [], []
    area = h * w
    for q in THRESHOLDS:
        for x1, y1, x2, y2, px in components_reference(sal > np.percentile(sal, q)):
            bw, bh = x2 - x1, y2 - y1
            if not (0.001 * area <= bw * bh <= 0.12 * area and min(bw, bh) >= 3 and 0.2 <= bw / bh <= 6):
                continue
            gx, gy = bw // 2 + 1, bh // 2 + 1
            ox1, oy1, ox2, oy2 = max(0, x1 - gx), max(0, y1 - gy), min(w, x2 + gx), min(h, y2 + gy)
            inner = mean(x1, y1, x2, y2)
            outer_area = (ox2 - ox1) * (oy2 - oy1) - bw * bh
            ring = ((mean(ox1, oy1, ox2, oy2) * (ox2 - ox1) * (oy2 - oy1) - inner * bw * bh)
                    / max(1, outer_area))
            contrast = max(0.0, (inner - ring) / max(inner + ring, 1e-6))
            dx, dy = ((x1 + x2) / 2 - w / 2) / w, ((y1 + y2) / 2 - h / 2) / h
            prior = float(np.exp(-(dx * dx + dy * dy) / (2 * 0.35 ** 2)))
            cands.append((x1, y1, x2, y2))
            scores.append(contrast * (px / (bw * bh)) ** 0.5 * prior)
    if not cands:
        return []
    boxes = np.asarray(cands, dtype=np.float32)
    sc = np.asarray(scores, dtype=np.float32)
    keep = _nms(boxes, sc, nms)[:max_boxes]
    return [PartBox(float(boxes[i, 0] / scale), float(boxes[i, 1] / scale), float(min(w0, boxes[i, 2] / scale)),
                    float(min(h0, boxes[i, 3] / scale)), round(float(sc[i]), 4), "proposal") for i in keep]
