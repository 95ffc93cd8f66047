"""Boxes from external detectors -> the part-box file.

Two input forms:

* **plain text**, one file per image, one box per line: ``label score x1 y1 x2 y2``
  (pixels; blank lines and ``#`` comments ignored). The file of image key
  ``image_train/0001_c001_00016450_0.jpg`` is ``<txt_root>/image_train/0001_c001_00016450_0.txt``
  (``...0.jpg.txt`` is accepted too).
* **COCO detection results**: a JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h],
  "score"}``. With the matching COCO annotation file (``images`` with ``file_name``,
  ``categories`` with ``name``) ids become image keys and class names; without it
  ``image_id`` must be the image key (or its unique file name) and the class is
  ``category_name`` (else ``str(category_id)``).

Image sizes come from the image files of the dataset. Boxes reaching outside
the image are clipped (a counted warning); ``x2 < x1`` is an error naming the
file and line; classes outside an optional label set are dropped with a count;
images without any input file are counted and left out.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pgan.data.records import ImageRecord
from pgan.detection.data import image_size, load_json
from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, PartBox
from pgan.parts.selection import select_top_d

log = logging.getLogger(__name__)


@dataclass
class ConvertReport:
    images: int = 0
    boxes: int = 0
    clipped: int = 0
    missing: list[str] = field(default_factory=list)
    unknown_labels: Counter = field(default_factory=Counter)

    def warn(self, source: str) -> None:
        if self.clipped:
            log.warning("%s: %d boxes reached outside their image and were clipped", source, self.clipped)
        if self.unknown_labels:
            log.warning("%s: dropped %d boxes of classes outside the label set (%s)", source,
                        sum(self.unknown_labels.values()), ", ".join(sorted(self.unknown_labels)[:8]))
        if self.missing:
            log.warning("%s: no boxes for %d images (first: %s); they are left out of the part file", source,
                        len(self.missing), self.missing[0])


def _make_box(x1: float, y1: float, x2: float, y2: float, score: float, label: str, w: int, h: int,
              where: str, report: ConvertReport) -> PartBox:
    if x2 < x1 or y2 < y1:
        raise PganError(f"{where}: box has x2<x1 or y2<y1: {[x1, y1, x2, y2]}")
    c = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
    if c != (x1, y1, x2, y2):
        report.clipped += 1
    return PartBox(*c, score=score, label=label)


def parse_text_boxes(path: Path, width: int, height: int, report: ConvertReport,
                     classes: set[str] | None = None) -> list[PartBox]:
    """The boxes of one ``label score x1 y1 x2 y2`` text file."""
    boxes = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PganError(f"cannot read {path}: {exc}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"{path}:{lineno}"
        if len(fields) != 6:
            raise PganError(f"{where}: expected 'label score x1 y1 x2 y2', got {len(fields)} fields")
        try:
            score, x1, y1, x2, y2 = (float(v) for v in fields[1:])
        except ValueError:
            raise PganError(f"{where}: score and coordinates must be numbers: {line!r}") from None
        if classes is not None and fields[0] not in classes:
            report.unknown_labels[fields[0]] += 1
            continue
        boxes.append(_make_box(x1, y1, x2, y2, score, fields[0], width, height, where, report))
    return boxes


def text_dir_to_parts(txt_root: str | Path, records: Sequence[ImageRecord], classes: Sequence[str] | None = None,
                      max_boxes: int = 0) -> tuple[list[ImageParts], ConvertReport]:
    """Per-image text files under ``txt_root`` -> part-box items (``max_boxes`` > 0 keeps the best ones)."""
    txt_root = Path(txt_root)
    if not txt_root.is_dir():
        raise PganError(f"box text folder {txt_root} does not exist")
    wanted = set(classes) if classes else None
    report, items = ConvertReport(), []
    for rec in records:
        stem = PurePosixPath(rec.key).with_suffix("")
        path = next((p for p in (txt_root / f"{stem}.txt", txt_root / f"{rec.key}.txt") if p.is_file()), None)
        if path is None:
            report.missing.append(rec.key)
            continue
        w, h = image_size(rec.path)
        boxes = parse_text_boxes(path, w, h, report, wanted)
        boxes = select_top_d(boxes, max_boxes) if max_boxes > 0 else boxes
        items.append(ImageParts(rec.key, w, h, boxes))
        report.images += 1
        report.boxes += len(boxes)
    report.warn(str(txt_root))
    if not items:
        raise PganError(f"no box files for any image under {txt_root} (expected <split>/<image-stem>.txt)")
    return items, report


def _key_index(records: Sequence[ImageRecord]) -> dict[str, str | None]:
    """Image key and file name -> key (None marks a file name shared by several images)."""
    index: dict[str, str | None] = {}
    for r in records:
        index[r.key] = r.key
        name = PurePosixPath(r.key).name
        index[name] = None if name in index and index[name] != r.key else r.key
    return index


def coco_results_to_parts(results_file: str | Path, records: Sequence[ImageRecord],
                          coco_ann: str | Path | None = None, classes: Sequence[str] | None = None,
                          max_boxes: int = 0) -> tuple[list[ImageParts], ConvertReport]:
    """COCO detection results -> part-box items, one per image with results."""
    results_file = Path(results_file)
    results = load_json(results_file)
    if not isinstance(results, list):
        raise PganError(f"{results_file}: COCO detection results must be a JSON list of detections")
    id_to_name: dict = {}
    cat_names: dict = {}
    if coco_ann is not None:
        ann = load_json(Path(coco_ann))
        try:
            id_to_name = {im["id"]: str(im["file_name"]) for im in ann["images"]}  # type: ignore[index]
            cat_names = {c["id"]: str(c["name"]) for c in ann.get("categories", [])}  # type: ignore[union-attr]
        except (KeyError, TypeError, AttributeError):
            raise PganError(f"{coco_ann}: needs 'images' with 'id' and 'file_name'") from None
    index = _key_index(records)
    by_key = {r.key: r for r in records}
    wanted = set(classes) if classes else None
    report = ConvertReport()
    grouped: dict[str, list] = defaultdict(list)
    for k, det in enumerate(results):
        where = f"{results_file}: detection {k}"
        try:
            image_id = det["image_id"]
            x, y, w, h = (float(v) for v in det["bbox"])
            score = float(det.get("score", 1.0))
        except (KeyError, TypeError, ValueError):
            raise PganError(f"{where} needs 'image_id', a numeric 'bbox' [x, y, w, h] and 'score'") from None
        name = id_to_name.get(image_id, image_id) if id_to_name else image_id
        key = index.get(str(name)) or index.get(PurePosixPath(str(name)).name)
        if key is None:
            hint = "" if coco_ann else " (pass the COCO annotation file to map numeric ids)"
            raise PganError(f"{where}: image {image_id!r} is not an image of the dataset{hint}")
        cat = det.get("category_id")
        label = cat_names.get(cat) or str(det.get("category_name", cat))
        if wanted is not None and label not in wanted:
            report.unknown_labels[label] += 1
            continue
        grouped[key].append((x, y, x + w, y + h, score, label, where))
    items = []
    for key, dets in grouped.items():
        wi, hi = image_size(by_key[key].path)
        boxes = [_make_box(*d[:6], wi, hi, d[6], report) for d in dets]
        boxes = select_top_d(boxes, max_boxes) if max_boxes > 0 else select_top_d(boxes, len(boxes))
        items.append(ImageParts(key, wi, hi, boxes))
        report.images += 1
        report.boxes += len(boxes)
    report.missing = [r.key for r in records if r.key not in grouped]
    report.warn(str(results_file))
    if not items:
        raise PganError(f"{results_file}: no detection matches an image of the dataset")
    return items, report
