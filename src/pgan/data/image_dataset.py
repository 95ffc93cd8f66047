"""The torch ``Dataset`` of images + part masks fed to training and feature extraction.

Images are decoded, converted to RGB and resized to the network's input size.
With ``cache=True`` every image is decoded once up front into a ``uint8``
tensor (fast epochs on small data sets such as the synthetic benchmark);
corrupt images are then dropped with one counted warning. Without the cache a
corrupt image is an error naming the file.

Part masks come from any object with the two methods of :class:`MaskSource` (the part sources of
:mod:`pgan.parts.sources` are such objects). The protocol lives here so that ``data`` imports nothing
from ``parts``: the arrow points from ``parts`` (which reads datasets to extract boxes) to ``data``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from pgan.data.records import ImageRecord
from pgan.data.transforms import JointTransform
from pgan.errors import PganError

log = logging.getLogger(__name__)

__all__ = ["MaskSource", "ReidImageDataset", "load_image"]


class MaskSource(Protocol):
    """What the dataset needs of a part source: per-image masks at the feature-map size, and a
    check, made once up front, that every image of the split is covered."""

    def masks_for(self, key: str, fh: int, fw: int) -> np.ndarray: ...

    def check_coverage(self, keys: Iterable[str]) -> None: ...


def load_image(path, size: tuple[int, int]) -> torch.Tensor:
    """``uint8 (3, H, W)`` RGB at ``size = (H, W)``; raises PganError for an unreadable file."""
    try:
        with Image.open(path) as im:
            im = im.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise PganError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class ReidImageDataset(Dataset):
    """Items are dicts: ``image (3,H,W) float``, ``masks (D,h,w)`` (when a part source
    is given), ``role_scores (D,)`` (when a table of them by image key is given: the oracle
    variant's, see :mod:`pgan.engine.oracle`), ``pid``, ``camid``, ``index``."""

    def __init__(self, records: list[ImageRecord], input_size: tuple[int, int],
                 feat_size: tuple[int, int] | None = None, parts: MaskSource | None = None,
                 train: bool = False, cache: bool = False, flip_p: float = 0.5, erase_p: float = 0.5,
                 progress: bool = True, workers: int = 2,
                 role_scores: Mapping[str, np.ndarray] | None = None) -> None:
        if parts is not None and feat_size is None:
            raise ValueError("feat_size is needed to build part masks")
        self.records = list(records)
        self.input_size = input_size
        self.feat_size = feat_size
        self.parts = parts
        self.role_scores = role_scores
        self.transform = JointTransform(train, flip_p, erase_p)
        if parts is not None:
            parts.check_coverage(r.key for r in self.records)
        self.cache: torch.Tensor | None = None
        self.dropped: list[ImageRecord] = []
        if cache:
            self._fill_cache(progress, workers)

    def _fill_cache(self, progress: bool, workers: int) -> None:
        def load(rec: ImageRecord):
            try:
                return load_image(rec.path, self.input_size)
            except PganError:
                return None

        with ThreadPoolExecutor(max(1, workers)) as pool:
            images = list(tqdm(pool.map(load, self.records), total=len(self.records), disable=not progress,
                               desc="decoding images", leave=False))
        keep = [i for i, im in enumerate(images) if im is not None]
        self.dropped = [self.records[i] for i in range(len(images)) if images[i] is None]
        if self.dropped:
            log.warning("skipped %d unreadable images (first: %s)", len(self.dropped), self.dropped[0].path)
        if not keep:
            if not self.records:
                raise PganError("this split lists no images (nothing to cache)")
            raise PganError(f"none of the {len(self.records)} images of this split could be decoded for the "
                            f"image cache (first: {self.records[0].path})")
        self.records = [self.records[i] for i in keep]
        self.cache = torch.stack([images[i] for i in keep])

    def __len__(self) -> int:
        return len(self.records)

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.records]

    def __getitem__(self, index: int) -> dict:
        rec = self.records[index]
        image = self.cache[index] if self.cache is not None else load_image(rec.path, self.input_size)
        masks = None
        if self.parts is not None:
            fh, fw = self.feat_size
            masks = torch.from_numpy(self.parts.masks_for(rec.key, fh, fw))
        image, masks = self.transform(image, masks)
        item = {"image": image, "pid": rec.pid, "camid": rec.camid, "index": index}
        if masks is not None:
            item["masks"] = masks
        if self.role_scores is not None:
            item["role_scores"] = torch.from_numpy(self.role_scores[rec.key])
        return item
