"""Training-free, annotation-free part proposals (the ``proposals`` part source).

For datasets without any part labels: small regions that stand out from their
surroundings on the vehicle (lights, logos, plates, stickers, mirrors, wheels)
are what PGAN's detector finds. The method, per image (numpy array operations, about 3 ms of CPU
for a real-dev photo on one thread: ``docs/proposal_speed.json``):

1. **Working scale**: the image is resized so its long side is 128 px and
   lightly smoothed (3x3 box filter) to suppress noise and JPEG blocks.
2. **Centre-surround saliency**: ``S = |I_3x3 - I_local|`` summed over RGB,
   where ``I_local`` is the per-channel median of a window of about 1/8 of the
   image side: a pixel is salient when its colour differs from its
   neighbourhood (a part) rather than from the whole image (the body paint);
   the median (not a mean) leaves no halo around a part smaller than half the
   window, so regions stay tight.
3. **Multi-threshold regions**: ``S`` is thresholded at its 80th, 88th and
   94th percentiles; the 4-connected components of each binary map are the
   candidate regions (a nested hierarchy, like MSER or selective search's
   grouping levels), each replaced by its bounding box.
4. **Filtering**: boxes covering 0.1-12% of the image, with sides of at least
   3 px and an aspect ratio between 1:5 and 6:1, are kept.
5. **Score** in [0, 1]: ``contrast x fill^0.5 x prior``; ``contrast`` is
   ``(inside - ring) / (inside + ring)`` of the mean saliency inside the box
   and in a ring around it (the box grown by half its size); ``fill`` is the
   component's share of its box; ``prior`` is a Gaussian of the box centre's
   distance to the image centre (sigma = 0.35 of the side), since re-ID images
   are vehicle crops and clutter sits at the borders.
6. **Selection**: class-agnostic NMS at IoU 0.45, then the ``max_boxes`` best
   (16 by default; training keeps the top ``D``). Label: ``"proposal"``.

Every step is deterministic; boxes are written in the original image's pixels
to the same part-box file as any detector, so everything downstream is shared.
``pgan parts proposals`` (training) and a new photo at search time
(:class:`pgan.inference.parts.TestTimeParts`) both call :func:`propose_boxes`, so
they give the same boxes. The first, loop-based implementation lives on in
:mod:`pgan.parts.proposals_reference`; this one gives the same boxes (the tests
compare them), so part files written by either are interchangeable.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pgan.errors import PganError
from pgan.parts.boxfile import PartBox, check_part_file_owner
from pgan.parts.extract import dataset_images, run_extraction

__all__ = ["THRESHOLDS", "WORK_SIZE", "component_boxes", "components", "proposal_boxes_fn", "propose_boxes",
           "propose_parts"]

WORK_SIZE = 128
THRESHOLDS = (80.0, 88.0, 94.0)


def _box_filter(img: np.ndarray, r: int) -> np.ndarray:
    """Mean over a ``(2r+1)^2`` window (edges replicated) of an integer-valued ``(H, W, C)`` image.

    Separable integer sums (exact, so the same values as a summed-area table in float64), then one
    division.
    """
    h, w = img.shape[:2]
    k = 2 * r + 1
    p = np.pad(np.asarray(img, dtype=np.int32), ((r, r), (r, r), (0, 0)), mode="edge")
    rows = sum(p[i:i + h] for i in range(k))
    s = sum(rows[:, i:i + w] for i in range(k))
    return (s / (k * k)).astype(np.float32)


def _local_median(img: np.ndarray) -> np.ndarray:
    """The per-channel median of a window of about 1/8 of the image side around each pixel.

    Computed at half resolution and upsampled. Unlike a mean, the median ignores a part that
    covers less than half the window, so the part stands out with no halo around it.
    """
    h, w = img.shape[:2]
    small = np.asarray(Image.fromarray(img.clip(0, 255).astype(np.uint8)).resize(
        (max(4, w // 2), max(4, h // 2)), Image.BILINEAR), dtype=np.uint8)
    r = max(2, round(min(small.shape[:2]) / 16))
    # uint16 windows: the same values as the uint8 image, and numpy's SIMD partition, which covers 16-bit and
    # wider types but not 8-bit ones (about 3x faster than uint8 on the development machine).
    padded = np.pad(small.astype(np.uint16), ((r, r), (r, r), (0, 0)), mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, (2 * r + 1, 2 * r + 1), axis=(0, 1))
    k = (2 * r + 1) ** 2  # odd, so the middle element is the median
    flat = windows.reshape(*small.shape, k)  # a copy (the windows overlap), so partitioned in place
    flat.partition(k // 2, axis=-1)
    med = flat[..., k // 2].astype(np.uint8)
    return np.asarray(Image.fromarray(med).resize((w, h), Image.BILINEAR), dtype=np.float32)


def component_boxes(mask: np.ndarray) -> np.ndarray:
    """4-connected components of a boolean ``(H, W)`` map -> ``(K, 5)`` int64 rows ``x1, y1, x2, y2, pixels``.

    x2/y2 exclusive; components in the order of their first pixel (row-major). Array operations
    only: rows are split into runs of ``True``; runs that touch a run of the row above are joined
    by hooking the larger label onto the smaller and pointer jumping until every run holds the
    smallest run index of its component.
    """
    m = np.asarray(mask, dtype=bool)
    h, w = m.shape
    d = np.diff(np.pad(m.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    sr, sc = np.nonzero(d == 1)
    _, ec = np.nonzero(d == -1)
    n = len(sr)
    if n == 0:
        return np.zeros((0, 5), dtype=np.int64)
    # The run index of every True pixel: runs are numbered in row-major order, as np.nonzero lists them.
    starts = np.zeros(h * w, dtype=np.int64)
    starts[sr * w + sc] = 1
    run_of = (np.cumsum(starts) - 1).reshape(h, w)
    both = m[1:] & m[:-1]
    a, b = run_of[1:][both], run_of[:-1][both]  # one pair per touching column; repeats are harmless
    lab = np.arange(n)
    while True:
        la, lb = lab[a], lab[b]
        differ = la != lb
        if not differ.any():
            break
        np.minimum.at(lab, np.maximum(la[differ], lb[differ]), np.minimum(la[differ], lb[differ]))
        while True:  # pointer jumping: every run points at its root again
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    is_root = lab == np.arange(n)  # a root is its component's first run, so components come in first-pixel order
    comp = (np.cumsum(is_root) - 1)[lab]
    k = int(is_root.sum())
    x1, x2, y2 = np.full(k, w, dtype=np.int64), np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    np.minimum.at(x1, comp, sc)
    np.maximum.at(x2, comp, ec)
    np.maximum.at(y2, comp, sr)
    px = np.bincount(comp, weights=ec - sc, minlength=k).astype(np.int64)
    return np.stack([x1, sr[is_root], x2, y2 + 1, px], axis=1).astype(np.int64)


def components(mask: np.ndarray) -> list[tuple[int, int, int, int, int]]:
    """4-connected components of a boolean ``(H, W)`` map -> ``(x1, y1, x2, y2, pixels)``, x2/y2 exclusive.

    The rows of :func:`component_boxes` as tuples, in the order of each component's first pixel.
    """
    return [tuple(int(v) for v in row) for row in component_boxes(mask)]  # type: ignore[misc]


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    import torchvision

    keep = torchvision.ops.nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores).float(), iou)
    return keep.numpy()


def _box_means(sat: np.ndarray, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """Mean of the map behind the summed-area table ``sat`` over each box (x2/y2 exclusive)."""
    return (sat[y2, x2] - sat[y1, x2] - sat[y2, x1] + sat[y1, x1]) / np.maximum(1, (x2 - x1) * (y2 - y1))


def _score_candidates(sal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steps 3-5 of the module docstring for a saliency map: ``(N, 4)`` boxes (working pixels) and scores."""
    h, w = sal.shape
    sat = np.pad(sal.astype(np.float64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    # The three binary maps stacked, each followed by an empty row (so no component crosses from one to the
    # next), labelled in one call: components come threshold by threshold, as three calls would give them.
    # One percentile per call, as the reference computes them (a float32 map gives a float32 threshold; the
    # three-at-once call interpolates in float64 and moves pixels at the boundary).
    stacked = np.zeros((len(THRESHOLDS), h + 1, w), dtype=bool)
    for i, q in enumerate(THRESHOLDS):
        stacked[i, :h] = sal > np.percentile(sal, q)
    c = component_boxes(stacked.reshape(-1, w))
    offset = (c[:, 1] // (h + 1)) * (h + 1)
    x1, y1, x2, y2, px = c[:, 0], c[:, 1] - offset, c[:, 2], c[:, 3] - offset, c[:, 4]
    bw, bh = x2 - x1, y2 - y1
    area = h * w
    ratio = bw / np.maximum(bh, 1)
    ok = ((0.001 * area <= bw * bh) & (bw * bh <= 0.12 * area) & (np.minimum(bw, bh) >= 3)
          & (ratio >= 0.2) & (ratio <= 6))
    x1, y1, x2, y2, px, bw, bh = (v[ok] for v in (x1, y1, x2, y2, px, bw, bh))
    gx, gy = bw // 2 + 1, bh // 2 + 1
    ox1, oy1 = np.maximum(0, x1 - gx), np.maximum(0, y1 - gy)
    ox2, oy2 = np.minimum(w, x2 + gx), np.minimum(h, y2 + gy)
    inner = _box_means(sat, x1, y1, x2, y2)
    outer = _box_means(sat, ox1, oy1, ox2, oy2) * (ox2 - ox1) * (oy2 - oy1)  # products in the reference's order
    ring = (outer - inner * bw * bh) / np.maximum(1, (ox2 - ox1) * (oy2 - oy1) - bw * bh)
    contrast = np.maximum(0.0, (inner - ring) / np.maximum(inner + ring, 1e-6))
    dx, dy = ((x1 + x2) / 2 - w / 2) / w, ((y1 + y2) / 2 - h / 2) / h
    prior = np.exp(-(dx * dx + dy * dy) / (2 * 0.35 ** 2))
    scores = contrast * (px / (bw * bh)) ** 0.5 * prior
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32), scores.astype(np.float32)


def propose_boxes(image: np.ndarray, max_boxes: int = 16, nms: float = 0.45) -> list[PartBox]:
    """Part proposals for one ``uint8 (H, W, 3)`` RGB image, best first, in its pixels.

    The work is done at :data:`WORK_SIZE` px on the long side whatever the photo's size (smaller than
    the 160 or 224 px the recipes' networks take), and the boxes are mapped back to the photo's pixels.
    """
    h0, w0 = image.shape[:2]
    scale = WORK_SIZE / max(h0, w0)
    w, h = max(8, round(w0 * scale)), max(8, round(h0 * scale))
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    fine = _box_filter(img, 1)
    sal = np.abs(fine - _local_median(fine)).sum(-1)
    boxes, sc = _score_candidates(sal)
    if not len(boxes):
        return []
    keep = _nms(boxes, sc, nms)[:max_boxes]
    return [PartBox(float(boxes[i, 0] / scale), float(boxes[i, 1] / scale), float(min(w0, boxes[i, 2] / scale)),
                    float(min(h0, boxes[i, 3] / scale)), round(float(sc[i]), 4), "proposal") for i in keep]


def proposal_boxes_fn(max_boxes: int = 16, nms: float = 0.45):
    """A :data:`pgan.parts.extract.BoxesFn` running :func:`propose_boxes` on each image of a batch."""
    def fn(images: list[torch.Tensor]) -> list[list[PartBox]]:
        return [propose_boxes(im.permute(1, 2, 0).numpy(), max_boxes, nms) for im in images]

    return fn


def propose_parts(dataset: str, root: str, out: str, max_boxes: int = 16, nms: float = 0.45,
                  batch_size: int = 32, progress: bool = True, workers: int = 2):
    """Write proposals for every image of ``dataset`` to the part file ``out`` (resumable)."""
    if max_boxes < 1:
        raise PganError(f"max_boxes must be >= 1, got {max_boxes}")
    check_part_file_owner(out, "proposals")
    return run_extraction(dataset_images(dataset, root), out, proposal_boxes_fn(max_boxes, nms), batch_size,
                          progress, workers, desc="part proposals")
