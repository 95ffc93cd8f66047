"""The part-box file: one JSON object per line, one line per image.

Format (JSON Lines, UTF-8)::

    {"image": "image_train/0001_c001_00000001_0.jpg", "width": 224, "height": 224,
     "boxes": [[x1, y1, x2, y2, score, "label"], ...]}

  A box may carry a seventh element, its *role*: ``"identity"`` (a part that tells this
  vehicle from its near-twins) or ``"shared"`` (a part every vehicle of its family has).
  The synthetic generator writes it for every ground-truth box; it is only used to
  measure what the Part Attention Module attends to (``pgan analyze attention``).

* ``image`` is the image's path relative to the dataset root (POSIX separators);
  it is the :attr:`pgan.data.records.ImageRecord.key` of the image.
* Coordinates are in original-image pixels, ``x2 >= x1`` and ``y2 >= y1``.
* ``score`` is a confidence in [0, 1] (1.0 for ground truth); ``label`` is a
  part class name (kept for analysis, ignored by selection).
* Images may list any number of boxes, including none.

Derived files say what they are in their names (``parts_proposals.jsonl``,
``parts_detector-<fingerprint>.jsonl``, ``parts_grid.jsonl``); ``parts_gt*`` is only
ever ground truth (see :func:`check_part_file_owner`).

Lines are independent, so extraction can append and resume; a truncated last
line (an interrupted write) is skipped with a warning when reading.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pgan.errors import PganError
from pgan.utils.atomic import atomic_open

__all__ = ["ImageParts", "PART_ROLES", "PartBox", "ReadStats", "append_part_lines", "check_part_file_owner",
           "part_file_kind", "read_part_file", "write_part_file"]

log = logging.getLogger(__name__)

PART_ROLES = ("identity", "shared")


@dataclass(frozen=True)
class PartBox:
    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    label: str = "part"
    role: str | None = None  # "identity" | "shared" | None (unknown); see the module docstring

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def to_list(self) -> list:
        out = [round(self.x1, 2), round(self.y1, 2), round(self.x2, 2), round(self.y2, 2),
               round(float(self.score), 4), self.label]
        return out + [self.role] if self.role is not None else out


@dataclass
class ImageParts:
    """The part boxes of one image."""

    image: str
    width: int
    height: int
    boxes: list[PartBox] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"image": self.image, "width": self.width, "height": self.height,
                           "boxes": [b.to_list() for b in self.boxes]})


@dataclass
class ReadStats:
    """What :func:`read_part_file` repaired or skipped (reported as counted warnings)."""

    clipped: int = 0
    truncated_lines: int = 0


def _parse_line(line: str, where: str, stats: ReadStats) -> ImageParts:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise PganError(f"{where}: not valid JSON ({exc.msg})") from None
    try:
        image, width, height, raw = obj["image"], int(obj["width"]), int(obj["height"]), obj["boxes"]
    except (KeyError, TypeError, ValueError):
        raise PganError(f"{where}: needs keys 'image', 'width', 'height', 'boxes'") from None
    if width <= 0 or height <= 0:
        raise PganError(f"{where}: image size {width}x{height} is not positive")
    boxes = []
    for j, b in enumerate(raw):
        if not isinstance(b, (list, tuple)) or len(b) not in (5, 6, 7):
            raise PganError(f"{where}: box {j} must be [x1, y1, x2, y2, score, label(, role)]")
        try:
            x1, y1, x2, y2, score = (float(v) for v in b[:5])
        except (TypeError, ValueError):
            raise PganError(f"{where}: box {j} has a non-numeric coordinate or score") from None
        label = str(b[5]) if len(b) >= 6 else "part"
        role = b[6] if len(b) == 7 else None
        if role is not None and role not in PART_ROLES:
            raise PganError(f"{where}: box {j} role {role!r} must be one of {', '.join(PART_ROLES)}")
        if x2 < x1 or y2 < y1:
            raise PganError(f"{where}: box {j} of {image!r} has x2<x1 or y2<y1: {b[:4]}")
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            stats.clipped += 1
        boxes.append(PartBox(cx1, cy1, cx2, cy2, score, label, role))
    return ImageParts(image, width, height, boxes)


def read_part_file(path: str | os.PathLike) -> dict[str, ImageParts]:
    """Read a part-box file into ``{image key: ImageParts}``.

    Boxes that reach outside the image are clipped to it (a counted warning);
    boxes with ``x2 < x1`` or ``y2 < y1`` and malformed lines are errors naming
    the file and line. A truncated last line is skipped with a warning.
    """
    path = Path(path)
    if not path.is_file():
        raise PganError(f"part file {path} does not exist")
    stats = ReadStats()
    out: dict[str, ImageParts] = {}
    lines = path.read_text(encoding="utf-8").split("\n")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        is_last = all(not rest.strip() for rest in lines[lineno:])
        try:
            item = _parse_line(line, f"{path}:{lineno}", stats)
        except PganError:
            if is_last and not line.rstrip().endswith("}"):
                stats.truncated_lines += 1
                continue
            raise
        out[item.image] = item
    if stats.clipped:
        log.warning("%s: %d boxes reached outside their image and were clipped", path, stats.clipped)
    if stats.truncated_lines:
        log.warning("%s: skipped a truncated last line (an interrupted write)", path)
    return out


def write_part_file(path: str | os.PathLike, items: Iterable[ImageParts]) -> int:
    """Write a whole part-box file atomically; returns the number of images written."""
    n = 0
    with atomic_open(path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(item.to_json() + "\n")
            n += 1
    return n


def append_part_lines(path: str | os.PathLike, items: Iterable[ImageParts]) -> None:
    """Append images to a part file (used by resumable extraction); flushed to disk."""
    with open(path, "a", encoding="utf-8") as fh:
        for item in items:
            fh.write(item.to_json() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


_KINDS = {"gt": "file", "prop": "proposals", "det": "detector", "grid": "grid", "dff": "dff", "kmeans": "kmeans"}
_KIND_RE = re.compile(r"parts_(gt|prop|det|grid|dff|kmeans)")


def part_file_kind(path: str | Path) -> str | None:
    """The source a part file's name says wrote it: ``file`` (``parts_gt*``: ground truth), ``proposals``
    (``parts_prop*``), ``detector`` (``parts_det*``), ``grid`` (``parts_grid*``), ``dff`` / ``kmeans``
    (``parts_dff*``, ``parts_kmeans*``: :mod:`pgan.parts.discovery`); None for other names."""
    m = _KIND_RE.search(Path(path).name)
    return _KINDS[m.group(1)] if m else None


def check_part_file_owner(path: str | Path, source: str) -> None:
    """Refuse a ``proposals``/``detector``/``grid`` source reading or writing another source's file.

    The ``file`` source reads any part file (ground truth or a converted tool's output).
    """
    kind = part_file_kind(path)
    if source != "file" and kind is not None and kind != source:
        what = "ground-truth" if kind == "file" else kind
        raise PganError(f"part source {source!r} must not use {path}: its name marks it as the {what} part file; "
                        f"name the {source} file itself (e.g. parts_{source}.jsonl) or leave data.part_file unset")
