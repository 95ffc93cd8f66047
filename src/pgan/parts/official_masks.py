"""The original authors' released part masks as a part source.

Layout: one ``.npy`` array per image, ``<root>/<split-folder>/<image-name>.npy``
(``<root>/image_train/0001_c001_00016450_0.npy``; ``...0.jpg.npy`` is accepted
too), shape ``(N, 14, 14)`` (the feature-map resolution of a 224 px ResNet-50)
or ``(N, H, W)`` at any resolution. Like the authors' loader, the LAST ``D``
masks are used (``arr[-D:]``); fewer than ``D`` are padded with empty masks.

Conversion to our ``(D, fh, fw)`` masks:

* at matching resolution (``H, W == fh, fw``) the values are copied unchanged
  (as float32): the conversion is lossless;
* otherwise each feature cell takes the maximum over its footprint in the
  source mask (adaptive max pooling): a cell is on where any part of it is on,
  the same "any overlap" rule :mod:`pgan.parts.masks` uses for boxes. Enlarging
  (e.g. 14x14 -> 28x28) therefore repeats values exactly (nearest neighbour on
  an integer factor).

A file that is not a numeric 3-D array, is empty or holds NaN/inf is an error
naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import numpy as np
import torch
import torch.nn.functional as F

from pgan.errors import PganError

log = logging.getLogger(__name__)


def load_official_mask(path: str | Path) -> np.ndarray:
    """One official ``.npy`` file -> ``float32 (N, H, W)``, validated."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PganError(f"cannot read mask file {path}: {exc}") from None
    if arr.ndim != 3 or 0 in arr.shape:
        raise PganError(f"mask file {path} has shape {arr.shape}; expected (N, H, W), e.g. (8, 14, 14)")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise PganError(f"mask file {path} holds {arr.dtype} values, not numbers")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise PganError(f"mask file {path} holds NaN or infinite values")
    return arr


def resample_masks(masks: np.ndarray, fh: int, fw: int) -> np.ndarray:
    """``(N, H, W)`` -> ``(N, fh, fw)``: unchanged at equal size, else adaptive max pooling."""
    if masks.shape[1:] == (fh, fw):
        return masks.astype(np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(masks, dtype=np.float32))[None]
    return F.adaptive_max_pool2d(t, (fh, fw))[0].numpy()


def select_last(masks: np.ndarray, d: int) -> np.ndarray:
    """The last ``d`` masks (the authors' choice), zero-padded at the end to exactly ``d``."""
    last = masks[-d:] if d else masks[:0]
    if len(last) < d:
        pad = np.zeros((d - len(last), *masks.shape[1:]), dtype=masks.dtype)
        last = np.concatenate([last, pad])
    return last


class OfficialMaskParts:
    """Masks from the authors' per-image ``.npy`` files (see the module docstring)."""

    def __init__(self, root: str | Path, num_parts: int = 8, missing: str = "error") -> None:
        if missing not in ("error", "empty"):
            raise PganError(f"missing must be 'error' or 'empty', got {missing!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise PganError(f"official mask folder {self.root} does not exist")
        self.num_parts = num_parts
        self.missing = missing

    def path_for(self, key: str) -> Path | None:
        stem = PurePosixPath(key).with_suffix("")
        for p in (self.root / f"{stem}.npy", self.root / f"{key}.npy"):
            if p.is_file():
                return p
        return None

    def check_coverage(self, keys: Iterable[str]) -> None:
        absent = [k for k in keys if self.path_for(k) is None]
        if not absent:
            return
        if self.missing == "error":
            raise PganError(f"official masks under {self.root} lack image {absent[0]!r} (expected "
                            f"{self.root / PurePosixPath(absent[0]).with_suffix('.npy')}; {len(absent)} "
                            f"missing in all; set data.missing_parts=empty to allow)")
        log.warning("official masks under %s lack %d images; they get empty masks", self.root, len(absent))

    def masks_for(self, key: str, fh: int, fw: int) -> np.ndarray:
        path = self.path_for(key)
        if path is None:
            if self.missing == "error":
                raise PganError(f"official masks under {self.root} lack image {key!r}")
            return np.zeros((self.num_parts, fh, fw), dtype=np.float32)
        return resample_masks(select_last(load_official_mask(path), self.num_parts), fh, fw)
