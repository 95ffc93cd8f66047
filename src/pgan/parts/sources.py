"""Part sources: where the masks ``M_i`` of an image come from.

A source answers ``masks_for(key, fh, fw) -> (D, fh, fw) float32`` for an image
key (see :class:`pgan.data.records.ImageRecord`). Training and evaluation never
ask where the boxes came from.

Sources by name (:data:`PART_SOURCES`, built with :func:`build_source`):

* ``file``: a part-box file (ground truth, any external tool; plain-text and
  COCO results convert to it, see :mod:`pgan.detection.convert`) -> top-D boxes by
  score -> masks. See :mod:`pgan.parts.boxfile`.
* ``detector``: the part file ``pgan parts extract`` wrote (a detector's output
  is just a part file).
* ``official-masks``: the original authors' per-image ``.npy`` masks
  (:mod:`pgan.parts.official_masks`).
* ``proposals``: the part file ``pgan parts proposals`` wrote; written first
  when it does not exist yet and ``dataset``/``root`` are given
  (:mod:`pgan.parts.proposals`).

Derived part files say what they are in their names (``parts_proposals.jsonl``,
``parts_detector-<fingerprint>.jsonl``, ``parts_grid.jsonl``); ``parts_gt*`` is only
ever ground truth. :func:`check_part_file_owner` refuses a ``detector`` or
``proposals`` source (or writer) on a file whose name says another source made it,
so a derived source can never silently read (or overwrite) the ground truth.
* ``dff`` / ``kmeans``: parts discovered without labels from the ImageNet backbone's features
  (deep feature factorisation or k-means of feature cells, fitted on the training images;
  :mod:`pgan.parts.discovery`): the part file ``pgan parts discover`` wrote, written first when it
  does not exist yet and ``dataset``/``root``/``features`` are given. On the real-dev photos they did
  not beat ``proposals`` (``docs/real_dev.md``).
* ``grid``: uniform cells (:func:`pgan.utils.grid.grid_masks`). The ``grid``
  model variant builds these itself; :func:`grid_boxes` writes them as a part
  file so the file-based path can use them too (``pgan parts grid``). Through a
  file, cells are rasterised like any box (any overlap), so on a feature map
  whose cells do not divide the grid evenly, neighbouring cells share a row or
  column; :class:`GridParts` is exact.

Example::

    src = build_source("file", part_file="data/synth/parts_gt.jsonl", num_parts=8)
    src.masks_for("image_train/0001_c001_00004586_0.jpg", 10, 10).shape   # (8, 10, 10)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np

from pgan.data.image_dataset import MaskSource
from pgan.errors import PganError, unknown_name
from pgan.parts.boxfile import ImageParts, check_part_file_owner, read_part_file
from pgan.parts.discovery import FeatureFn, discover_parts
from pgan.parts.masks import MASK_MODES, boxes_to_masks, grid_boxes  # noqa: F401  (grid_boxes: public here too)
from pgan.parts.selection import select_top_d
from pgan.utils.grid import grid_masks

__all__ = ["DERIVED_SOURCES", "BoxFileParts", "GridParts", "PART_SOURCES", "PartSource", "build_source",
           "default_part_file", "grid_boxes"]

log = logging.getLogger(__name__)


class PartSource(MaskSource, Protocol):
    """A part source: the dataset's :class:`~pgan.data.image_dataset.MaskSource` (``masks_for``,
    ``check_coverage``) and the number of parts ``D`` its masks hold."""

    num_parts: int


class BoxFileParts:
    """Masks from a part-box file.

    ``missing="error"`` (default) refuses images the file does not list, naming
    the first; ``missing="empty"`` gives them empty masks (the model then uses the
    global feature only) and warns with a count.
    """

    def __init__(self, part_file: str | Path, num_parts: int = 8, missing: str = "error",
                 min_overlap: float = 0.0, mask_mode: str = "any") -> None:
        if missing not in ("error", "empty"):
            raise PganError(f"missing must be 'error' or 'empty', got {missing!r}")
        if mask_mode not in MASK_MODES:
            raise PganError(f"data.mask_mode={mask_mode!r} must be one of {', '.join(MASK_MODES)}")
        self.mask_mode = mask_mode  # "any": binary masks; "fraction": each cell's covered share
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
                            f"({len(absent)} images missing in all; set data.missing_parts=empty to allow)")
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
        return boxes_to_masks(boxes, item.width, item.height, fh, fw, self.num_parts, self.min_overlap,
                              self.mask_mode)


class GridParts:
    """``num_parts`` uniform grid cells for every image (exactly :func:`grid_masks`)."""

    def __init__(self, num_parts: int = 8) -> None:
        if num_parts < 1:
            raise PganError(f"num_parts must be >= 1, got {num_parts}")
        self.num_parts = num_parts

    def check_coverage(self, keys: Iterable[str]) -> None:
        return None

    def masks_for(self, key: str, fh: int, fw: int) -> np.ndarray:
        return grid_masks(fh, fw, self.num_parts)


_NEED_HINT = {"detector": " (data.part_file: the file 'pgan parts extract --out ...' wrote)",
              "official-masks": " (data.mask_root)", "file": " (data.part_file)", "proposals": " (data.part_file)",
              "dff": " (data.part_file)", "kmeans": " (data.part_file)"}


def _need(name: str, **values: object) -> None:
    for key, value in values.items():
        if value is None:
            raise PganError(f"part source {name!r} needs {key}{_NEED_HINT.get(name, '')}")


def _need_file(name: str, part_file: str | Path) -> None:
    """A part file the source reads must exist; the error names the source that needs none."""
    if not Path(part_file).is_file():
        raise PganError(f"part file {part_file} does not exist (data.part_source={name}); photos without part "
                        f"labels can use data.part_source=proposals (boxes computed from the images on first use)")


def _file_source(part_file: str | Path | None = None, num_parts: int = 8, missing: str = "error",
                 mask_mode: str = "any", **_: object) -> PartSource:
    _need("file", part_file=part_file)
    _need_file("file", part_file)  # type: ignore[arg-type]
    return BoxFileParts(part_file, num_parts, missing, mask_mode=mask_mode)  # type: ignore[arg-type]


def _detector_source(part_file: str | Path | None = None, num_parts: int = 8, missing: str = "error",
                     mask_mode: str = "any", **_: object) -> PartSource:
    _need("detector", part_file=part_file)
    check_part_file_owner(part_file, "detector")  # type: ignore[arg-type]
    _need_file("detector", part_file)  # type: ignore[arg-type]
    return BoxFileParts(part_file, num_parts, missing, mask_mode=mask_mode)  # type: ignore[arg-type]


def _official_source(mask_root: str | Path | None = None, num_parts: int = 8, missing: str = "error",
                     **_: object) -> PartSource:
    from pgan.parts.official_masks import OfficialMaskParts

    _need("official-masks", mask_root=mask_root)
    return OfficialMaskParts(mask_root, num_parts, missing)  # type: ignore[arg-type]


def _proposal_source(part_file: str | Path | None = None, num_parts: int = 8, missing: str = "error",
                     dataset: str | None = None, root: str | Path | None = None, mask_mode: str = "any",
                     **_: object) -> PartSource:
    _need("proposals", part_file=part_file)
    check_part_file_owner(part_file, "proposals")  # type: ignore[arg-type]
    if not Path(part_file).is_file():  # type: ignore[arg-type]
        if dataset is None or root is None:
            raise PganError(f"proposal file {part_file} does not exist; write it with 'pgan parts proposals' "
                            f"or pass dataset and root")
        from pgan.parts.proposals import propose_parts

        propose_parts(dataset, str(root), str(part_file), progress=False)
    return BoxFileParts(part_file, num_parts, missing, mask_mode=mask_mode)  # type: ignore[arg-type]


def _discovery_source(method: str) -> Callable[..., PartSource]:
    def make(part_file: str | Path | None = None, num_parts: int = 8, missing: str = "error",
             dataset: str | None = None, root: str | Path | None = None,
             features: Callable[[], FeatureFn] | None = None, mask_mode: str = "any",
             **_: object) -> PartSource:
        _need(method, part_file=part_file)
        check_part_file_owner(part_file, method)  # type: ignore[arg-type]
        if not Path(part_file).is_file():  # type: ignore[arg-type]
            if dataset is None or root is None or features is None:
                raise PganError(f"{method} part file {part_file} does not exist; write it with "
                                f"'pgan parts discover --method {method}' or pass dataset, root and features")
            discover_parts(dataset, str(root), str(part_file), features(), method, progress=False)
        return BoxFileParts(part_file, num_parts, missing, mask_mode=mask_mode)  # type: ignore[arg-type]

    return make


def _grid_source(num_parts: int = 8, **_: object) -> PartSource:
    return GridParts(num_parts)


PART_SOURCES: dict[str, Callable[..., PartSource]] = {
    "file": _file_source,
    "detector": _detector_source,
    "official-masks": _official_source,
    "proposals": _proposal_source,
    "grid": _grid_source,
    "dff": _discovery_source("dff"),
    "kmeans": _discovery_source("kmeans"),
}
"""Part sources by name; each takes keyword arguments (``part_file``, ``mask_root``, ``num_parts``,
``missing``, ``dataset``, ``root``, ``mask_mode`` (box sources: ``any`` or ``fraction``, see
:mod:`pgan.parts.masks`), ``features``: a factory of the ImageNet feature function that the
``dff`` and ``kmeans`` sources fit on when their file is missing) and ignores those it does not use."""


DERIVED_SOURCES = ("proposals", "dff", "kmeans")
"""Sources whose part file is computed from the images, so never kept in the dataset."""


def default_part_file(source: str, root: str | Path, part_file: str | Path | None = None,
                      part_cache: str | Path | None = None, out_dir: str | Path = "runs/default") -> str | None:
    """``part_file``, else the file the part source reads by default (``data.*`` and ``run.out_dir`` keys):

    * ``file``: the dataset's ground truth, ``<root>/parts_gt.jsonl`` (beside a CSV dataset:
      ``<csv stem>.parts_gt.jsonl``);
    * ``proposals``, ``dff``, ``kmeans``: derived, so never in the dataset:
      ``<part_cache>/parts_<source>.jsonl``, by default under ``<out_dir>/parts/`` (written on first use);
    * ``detector`` and the others: none (the file ``pgan parts extract`` wrote must be named).
    """
    if part_file:
        return str(part_file)
    if source in DERIVED_SOURCES:
        cache = Path(part_cache) if part_cache else Path(out_dir) / "parts"
        return str(cache / f"parts_{source}.jsonl")
    if source == "file":
        r = Path(root)
        return str(r.with_name(f"{r.stem}.parts_gt.jsonl") if r.is_file() else r / "parts_gt.jsonl")
    return None


def build_source(name: str, **kwargs: object) -> PartSource:
    """A part source by name, e.g. ``build_source("official-masks", mask_root="masks", num_parts=8)``."""
    if name not in PART_SOURCES:
        raise unknown_name("part source", name, list(PART_SOURCES))
    return PART_SOURCES[name](**kwargs)
