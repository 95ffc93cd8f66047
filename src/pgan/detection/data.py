"""Part annotations for the detector: Pascal-VOC XML and COCO JSON readers, and the torch dataset.

Both readers return :class:`DetectionSample` lists plus a :class:`ReadReport`
of what was repaired or skipped. Problems that make a file unusable (malformed
XML/JSON, a box without coordinates, a non-numeric coordinate) raise
:class:`PganError` naming the file; problems where skipping is safe are counted
warnings: boxes reaching outside the image (clipped), boxes of no area after
clipping (dropped), class names outside the label set (dropped; ``strict=True``
makes them errors), images whose file is missing, and images left without any
box (kept only with ``keep_empty=True``, e.g. for evaluation).

VOC image paths: the first file found among ``<base>/<folder>/<filename>``,
``<base>/<filename>`` and ``<base>/JPEGImages/<filename>``, where ``base`` is
``images_root`` or, when not given, each of the XML file's three nearest parent
folders (this finds the synthetic benchmark's ``<root>/annotations_voc/<split>/x.xml``
layout and the VOCdevkit one).
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from pgan.errors import PganError
from pgan.utils.images import load_rgb

log = logging.getLogger(__name__)


@dataclass
class DetectionSample:
    """One annotated image: boxes ``(N, 4)`` float32 in pixels, their labels and difficult flags."""

    image: Path
    key: str
    width: int
    height: int
    boxes: np.ndarray
    labels: list[str]
    difficult: np.ndarray


@dataclass
class ReadReport:
    """Counts of what the readers repaired or skipped."""

    files: int = 0
    clipped: int = 0
    degenerate: int = 0
    unknown_labels: Counter = field(default_factory=Counter)
    missing_images: list[str] = field(default_factory=list)
    empty_images: int = 0

    def warn(self, source: str) -> None:
        if self.clipped:
            log.warning("%s: %d boxes reached outside their image and were clipped", source, self.clipped)
        if self.degenerate:
            log.warning("%s: dropped %d boxes with no area inside the image", source, self.degenerate)
        if self.unknown_labels:
            names = ", ".join(f"{k} ({v})" for k, v in self.unknown_labels.most_common(8))
            log.warning("%s: dropped %d boxes of classes outside the label set: %s", source,
                        sum(self.unknown_labels.values()), names)
        if self.missing_images:
            log.warning("%s: skipped %d annotations whose image is missing (first: %s)", source,
                        len(self.missing_images), self.missing_images[0])
        if self.empty_images:
            log.warning("%s: %d images have no usable box", source, self.empty_images)


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from the image header; PganError for an unreadable file."""
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise PganError(f"cannot read image {path}: {exc}") from None


def _clean_boxes(raw: list[tuple[float, float, float, float, str, bool]], w: int, h: int,
                 classes: set[str] | None, strict: bool, where: str, report: ReadReport
                 ) -> tuple[np.ndarray, list[str], np.ndarray]:
    boxes, labels, diff = [], [], []
    for x1, y1, x2, y2, name, difficult in raw:
        if classes is not None and name not in classes:
            if strict:
                raise PganError(f"{where}: class {name!r} is not in the label set")
            report.unknown_labels[name] += 1
            continue
        if x2 < x1 or y2 < y1:
            raise PganError(f"{where}: box of {name!r} has x2<x1 or y2<y1: {[x1, y1, x2, y2]}")
        c = (min(max(x1, 0.0), w), min(max(y1, 0.0), h), min(max(x2, 0.0), w), min(max(y2, 0.0), h))
        if c != (x1, y1, x2, y2):
            report.clipped += 1
        if c[2] - c[0] < 1.0 or c[3] - c[1] < 1.0:
            report.degenerate += 1
            continue
        boxes.append(c)
        labels.append(name)
        diff.append(difficult)
    arr = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return arr, labels, np.asarray(diff, dtype=bool)


def _text(node: ET.Element, tag: str, where: str) -> str:
    found = node.find(tag)
    if found is None or found.text is None or not found.text.strip():
        raise PganError(f"{where}: missing <{tag}>")
    return found.text.strip()


def _number(node: ET.Element, tag: str, where: str) -> float:
    text = _text(node, tag, where)
    try:
        return float(text)
    except ValueError:
        raise PganError(f"{where}: <{tag}> is not a number: {text!r}") from None


def read_voc_file(xml: Path, images_root: Path | None, classes: Sequence[str] | None,
                  report: ReadReport, strict: bool = False, keep_empty: bool = False
                  ) -> DetectionSample | None:
    """One VOC XML file -> a sample (None when its image is missing or, unless kept, it has no box)."""
    xml = Path(xml)
    report.files += 1
    try:
        root = ET.parse(xml).getroot()
    except (ET.ParseError, OSError) as exc:
        raise PganError(f"{xml}: malformed Pascal-VOC XML ({exc})") from None
    if root.tag != "annotation":
        raise PganError(f"{xml}: root element is <{root.tag}>, expected <annotation>")
    filename = _text(root, "filename", str(xml))
    folder = (root.findtext("folder") or "").strip()
    bases = [Path(images_root)] if images_root is not None else list(xml.parents)[:3]
    candidates = [c for b in bases for c in ([b / folder / filename] if folder else [])
                  + [b / filename, b / "JPEGImages" / filename]]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        report.missing_images.append(str(candidates[0]))
        return None
    size = root.find("size")
    w = int(_number(size, "width", str(xml))) if size is not None and size.find("width") is not None else 0
    h = int(_number(size, "height", str(xml))) if size is not None and size.find("height") is not None else 0
    if w <= 0 or h <= 0:
        w, h = image_size(path)
    raw = []
    for k, obj in enumerate(root.iter("object")):
        where = f"{xml}: object {k}"
        name = _text(obj, "name", where)
        bb = obj.find("bndbox")
        if bb is None:
            raise PganError(f"{where} ({name}) has no <bndbox>")
        diff = (obj.findtext("difficult") or "0").strip() == "1"
        raw.append((_number(bb, "xmin", where), _number(bb, "ymin", where), _number(bb, "xmax", where),
                    _number(bb, "ymax", where), name, diff))
    boxes, labels, diff = _clean_boxes(raw, w, h, set(classes) if classes else None, strict, str(xml), report)
    if not labels:
        report.empty_images += 1
        if not keep_empty:
            return None
    key = f"{folder}/{filename}" if folder else filename
    return DetectionSample(path, key, w, h, boxes, labels, diff)


def _why(report: ReadReport) -> str:
    if report.unknown_labels:
        found = ", ".join(sorted(report.unknown_labels)[:6])
        return f" (no box has a class of the label set; the files use {found}, ...; try --classes auto)"
    if report.missing_images:
        return f" (images not found, e.g. {report.missing_images[0]}; set the image root)"
    return ""


def read_voc(dirs: Sequence[str | Path], images_root: str | Path | None = None,
             classes: Sequence[str] | None = None, strict: bool = False, keep_empty: bool = False
             ) -> tuple[list[DetectionSample], ReadReport]:
    """Every ``*.xml`` under ``dirs`` (recursively, sorted) -> samples and a report."""
    report = ReadReport()
    samples = []
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise PganError(f"annotation folder {d} does not exist")
        files = sorted(d.rglob("*.xml"))
        if not files:
            raise PganError(f"no Pascal-VOC *.xml files under {d}")
        for xml in files:
            s = read_voc_file(xml, Path(images_root) if images_root else None, classes, report, strict,
                              keep_empty)
            if s is not None:
                samples.append(s)
    report.warn(", ".join(str(d) for d in dirs))
    if not samples:
        raise PganError(f"no usable annotated images in {', '.join(map(str, dirs))}{_why(report)}")
    return samples, report


def load_json(path: Path) -> object:
    """Parsed JSON, or a PganError naming the file."""
    if not path.is_file():
        raise PganError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PganError(f"{path}: malformed JSON ({exc})") from None


def read_coco(ann_file: str | Path, images_root: str | Path | None = None,
              classes: Sequence[str] | None = None, strict: bool = False, keep_empty: bool = False
              ) -> tuple[list[DetectionSample], ReadReport]:
    """A COCO ``instances`` JSON (images, annotations, categories) -> samples and a report.

    Image paths are ``<images_root>/<file_name>`` (default root: the JSON's folder);
    ``iscrowd`` boxes are kept as ``difficult``.
    """
    ann_file = Path(ann_file)
    data = load_json(ann_file)
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise PganError(f"{ann_file}: a COCO file needs 'images', 'annotations' and 'categories'")
    base = Path(images_root) if images_root else ann_file.parent
    report = ReadReport(files=1)
    try:
        cats = {c["id"]: str(c["name"]) for c in data["categories"]}
        images = {im["id"]: im for im in data["images"]}
    except (KeyError, TypeError):
        raise PganError(f"{ann_file}: every category needs 'id' and 'name', every image 'id'") from None
    raw: dict[object, list] = {i: [] for i in images}
    for k, a in enumerate(data["annotations"]):
        where = f"{ann_file}: annotation {k}"
        try:
            x, y, w, h = (float(v) for v in a["bbox"])
            img_id, cat_id = a["image_id"], a["category_id"]
        except (KeyError, TypeError, ValueError):
            raise PganError(f"{where} needs 'image_id', 'category_id' and a numeric 'bbox' [x, y, w, h]") from None
        if img_id not in images:
            raise PganError(f"{where} refers to image id {img_id!r}, which 'images' does not list")
        if cat_id not in cats:
            raise PganError(f"{where} refers to category id {cat_id!r}, which 'categories' does not list")
        raw[img_id].append((x, y, x + w, y + h, cats[cat_id], bool(a.get("iscrowd", 0))))
    wanted = set(classes) if classes else None
    samples = []
    for img_id, im in images.items():
        if "file_name" not in im:
            raise PganError(f"{ann_file}: image {img_id!r} has no 'file_name'")
        path = base / im["file_name"]
        if not path.is_file():
            report.missing_images.append(str(path))
            continue
        w, h = int(im.get("width") or 0), int(im.get("height") or 0)
        if w <= 0 or h <= 0:
            w, h = image_size(path)
        boxes, labels, diff = _clean_boxes(raw[img_id], w, h, wanted, strict, f"{ann_file}: image {img_id!r}",
                                           report)
        if not labels:
            report.empty_images += 1
            if not keep_empty:
                continue
        samples.append(DetectionSample(path, str(im["file_name"]), w, h, boxes, labels, diff))
    report.warn(str(ann_file))
    if not samples:
        raise PganError(f"no usable annotated images in {ann_file}{_why(report)}")
    return samples, report


def read_annotations(voc: Sequence[str | Path] | None = None, coco: str | Path | None = None,
                     images_root: str | Path | None = None, classes: Sequence[str] | None = None,
                     strict: bool = False, keep_empty: bool = False) -> list[DetectionSample]:
    """VOC folders or a COCO file (exactly one of them) -> samples."""
    if bool(voc) == bool(coco):
        raise PganError("give part annotations as Pascal-VOC folders (--voc) or a COCO JSON (--coco), not both")
    if voc:
        return read_voc(voc, images_root, classes, strict, keep_empty)[0]
    return read_coco(coco, images_root, classes, strict, keep_empty)[0]


def label_set(samples: Sequence[DetectionSample]) -> list[str]:
    """Every class name the samples use, sorted (for ``--classes auto``)."""
    return sorted({lab for s in samples for lab in s.labels})


class DetectionDataset(Dataset):
    """Items are ``(image float (3, H, W) in [0, 1], {"boxes": (N, 4), "labels": (N,) int64})``.

    Labels are 1-based indices into ``classes`` (0 is the background). With
    ``train=True`` images are flipped horizontally with probability ``flip_p``
    (the part classes have no left/right variants). ``cache`` keeps decoded
    images in memory.
    """

    def __init__(self, samples: Sequence[DetectionSample], classes: Sequence[str], train: bool = False,
                 flip_p: float = 0.5, cache: bool = False, seed: int = 0) -> None:
        self.samples = list(samples)
        self.index = {c: i + 1 for i, c in enumerate(classes)}
        unknown = sorted(set(label_set(self.samples)) - set(self.index))
        if unknown:  # found here, not as a KeyError in the middle of an epoch
            raise PganError(f"annotation classes {unknown} are not in the detector's class list {list(classes)}: "
                            "read the annotations with that class list (boxes of other classes are dropped) "
                            "or train with every class in them (pgan parts train --classes auto)")
        self.train = train
        self.flip_p = flip_p
        self.gen = torch.Generator().manual_seed(seed)
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.samples)

    def _image(self, i: int) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = load_rgb(self.samples[i].image)
        if self.cache is not None:
            self.cache[i] = img
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict]:
        s = self.samples[i]
        img = self._image(i).float().div_(255)
        boxes = torch.as_tensor(s.boxes, dtype=torch.float32).reshape(-1, 4)
        labels = torch.tensor([self.index[lab] for lab in s.labels], dtype=torch.int64)
        if self.train and torch.rand((), generator=self.gen).item() < self.flip_p:
            img = img.flip(-1)
            w = img.shape[-1]
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        return img, {"boxes": boxes, "labels": labels}


def collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]
