"""Part sources: where the masks ``M_i`` of an image come from.

A source answers ``masks_for(key, fh, fw) -> (D, fh, fw) float32`` for an image
key (see :class:`pgan.data.records.ImageRecord`). Training and evaluation never
ask where the boxes came from.

* ``file``: a part-box file (ground truth, a detector's output, any external
  tool) -> top-D boxes by score -> masks. See :mod:`pgan.parts.boxfile`.
* ``grid`` needs no source: the ``grid`` variant builds its cells in the model.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Protocol

import numpy as np

from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, read_part_file
from pgan.parts.masks import boxes_to_masks
from pgan.parts.selection import select_top_d

log = logging.getLogger(__name__)


class PartSource(Protocol):
    num_parts: int

    def masks_for(self, key: str, fh: int, fw: int) -> np.ndarray: ...

    def check_coverage(self, keys: Iterable[str]) -> None: ...


class BoxFileParts:
    """Masks from a part-box file.

    ``missing="error"`` (default) refuses images the file does not list, naming
    the first; ``missing="empty"`` gives them empty masks (the model then uses the
    global feature only) and warns with a count.
    """

    def __init__(self, part_file: str | Path, num_parts: int = 8, missing: str = "error",
                 min_overlap: float = 0.0) -> None:
        if missing not in ("error", "empty"):
            raise PganError(f"missing must be 'error' or 'empty', got {missing!r}")
        self.path = Path(part_file)
        self.items: dict[str, ImageParts] = read_part_file(self.path)
        self.num_parts = num_parts
        self.missing = missing
        self.min_overlap = min_overlap

    def check_coverage(self, keys: Iterable[str]) -> None:
        absent = [k for k in keys if k not in self.items]
        if not absent:
            return
        if self.missing == "error":
            raise PganError(f"part file {self.path} lacks image {absent[0]!r} "
                            f"({len(absent)} images missing in all; use missing='empty' to allow)")
        log.warning("part file %s lacks %d images; they get empty part masks", self.path, len(absent))

    def boxes_for(self, key: str) -> ImageParts | None:
        return self.items.get(key)

    def masks_for(self, key: str, fh: int, fw: int) -> np.ndarray:
        item = self.items.get(key)
        if item is None:
            if self.missing == "error":
                raise PganError(f"part file {self.path} lacks image {key!r}")
            return np.zeros((self.num_parts, fh, fw), dtype=np.float32)
        boxes = select_top_d(item.boxes, self.num_parts)
        return boxes_to_masks(boxes, item.width, item.height, fh, fw, self.num_parts, self.min_overlap)
