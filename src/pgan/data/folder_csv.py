"""The custom-dataset CSV from a folder of vehicle photos: scan, split by vehicle, write.

Three layouts are read (``DIR`` is the folder given):

* ``DIR/<vehicle>/<camera>_*.jpg``: one folder per vehicle, the camera is the file name up to its first ``_``;
* ``DIR/<vehicle>/<camera>/*.jpg``: one folder per vehicle, one sub-folder per camera;
* any other layout with a regular expression holding the named groups ``vehicle`` and ``camera``, searched
  (``re.search``) in each image's path relative to ``DIR`` in POSIX form, e.g.
  ``(?P<vehicle>[a-z]+_[0-9]+)_cam(?P<camera>[0-9]+)`` for flat files such as ``car_0088_cam2.jpg``.

Files whose suffix is not an image's (``README``, ``.txt``, ...) and hidden files are skipped and counted.
Names become integer ids deterministically: when every name of a kind is a decimal number the number is the
id (camera ``2`` stays 2), otherwise the sorted names are numbered from 0; the names are kept in the
``vehicle_name`` and ``camera_name`` columns.

Splits are by vehicle, seeded: a share of the vehicles seen by two or more cameras is held out for
evaluation, the others train. With exactly two cameras in the folder, a held-out vehicle's images from the
lower camera id are queries and those from the other camera the gallery (as the real-dev set: query cam1,
gallery cam2). With more cameras, the VeRi-776 rule: one query image per held-out vehicle and camera, chosen
with the seed, and every held-out image in the gallery (VeRi-776's queries are drawn from its test images;
evaluation drops gallery images of the query's vehicle and camera, so a query never matches itself).
Vehicles seen by one camera cannot be evaluated across cameras and always train.

Example::

    from pgan.data.folder_csv import assign_splits, scan_folder, write_custom_csv

    scan = scan_folder("photos", pattern=r"(?P<vehicle>[a-z]+_[0-9]+)_cam(?P<camera>[0-9]+)")
    rows = assign_splits(scan.images, seed=0, test_fraction=0.2)
    write_custom_csv(rows, "photos/dataset.csv")
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pgan.errors import PganError

__all__ = ["CSV_COLUMNS", "DEFAULT_TEST_FRACTION", "IMAGE_SUFFIXES", "FolderImage", "FolderScan", "SplitRow",
           "SplitSummary", "assign_splits", "name_ids", "scan_folder", "summarize", "write_custom_csv"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
CSV_COLUMNS = ("path", "vehicle_id", "camera_id", "split", "vehicle_name", "camera_name")
SPLITS = ("train", "query", "gallery")
LAYOUTS = {
    "vehicle/camera_file": "DIR/<vehicle>/<camera>_*.jpg",
    "vehicle/camera/file": "DIR/<vehicle>/<camera>/*.jpg",
}
DEFAULT_TEST_FRACTION = 0.2


@dataclass(frozen=True)
class FolderImage:
    """One photo found in the folder: where it is and the vehicle and camera names its path gives."""

    path: Path  # absolute
    rel: str  # relative to the scanned folder, POSIX form
    vehicle: str
    camera: str


@dataclass
class FolderScan:
    """What :func:`scan_folder` found: the images (sorted by path), the layout read, the files skipped."""

    root: Path
    layout: str  # a key of LAYOUTS, or "pattern"
    images: list[FolderImage]
    skipped: list[str] = field(default_factory=list)  # non-image files, relative POSIX paths


@dataclass(frozen=True)
class SplitRow:
    """One row of the custom CSV: an image with its integer ids, names and split."""

    image: FolderImage
    vehicle_id: int
    camera_id: int
    split: str


@dataclass
class SplitSummary:
    """Counts per split (images, vehicles, cameras) and what the split rule had to decide."""

    images: dict[str, int]
    vehicles: dict[str, int]
    cameras: dict[str, int]
    rule: str  # "two cameras: query camera X, gallery camera Y" or "VeRi-776: ..."
    single_camera_vehicles: int  # vehicles seen by one camera only, all in train

    def to_dict(self) -> dict:
        return {"images": self.images, "vehicles": self.vehicles, "cameras": self.cameras, "rule": self.rule,
                "single_camera_vehicles_in_train": self.single_camera_vehicles}

    def table(self) -> str:
        lines = ["| split | images | vehicles | cameras |", "|---|---|---|---|"]
        lines += [f"| {s} | {self.images[s]} | {self.vehicles[s]} | {self.cameras[s]} |" for s in SPLITS]
        return "\n".join(lines)


def _compile(pattern: str) -> re.Pattern:
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise PganError(f"--pattern {pattern!r} is not a valid regular expression: {exc}") from None
    missing = [g for g in ("vehicle", "camera") if g not in rx.groupindex]
    if missing:
        raise PganError(f"--pattern {pattern!r} lacks the named group(s) {', '.join(missing)}: write "
                        f"(?P<vehicle>...) and (?P<camera>...)")
    return rx


def _names_from_layout(parts: tuple[str, ...], layout: str) -> tuple[str, str] | None:
    if layout == "vehicle/camera/file" and len(parts) == 3:
        return parts[0], parts[1]
    if layout == "vehicle/camera_file" and len(parts) == 2:
        camera, sep, _ = parts[1].partition("_")
        if sep and camera:
            return parts[0], camera
    return None


def scan_folder(root: str | Path, pattern: str | None = None) -> FolderScan:
    """The images under ``root`` with their vehicle and camera names (see the module docstring).

    Without ``pattern`` the layout is read from the first image (in path order): three path levels
    mean ``<vehicle>/<camera>/*.jpg``, two mean ``<vehicle>/<camera>_*.jpg``; every other image must
    follow it. :class:`PganError` names the first image that does not."""
    root = Path(root)
    if not root.is_dir():
        raise PganError(f"image folder {root} does not exist" if not root.exists()
                        else f"{root} is not a folder (--images takes the folder of photos)")
    rx = _compile(pattern) if pattern is not None else None
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    images, skipped = [], []
    layout = "pattern" if rx is not None else None
    for p in files:
        rel = p.relative_to(root).as_posix()
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append(rel)
            continue
        parts = tuple(rel.split("/"))
        if rx is not None:
            m = rx.search(rel)
            names = (m.group("vehicle"), m.group("camera")) if m else None
            if names is None or not all(names):
                raise PganError(f"{root / rel}: does not match --pattern {pattern!r} (searched in {rel!r}; "
                                f"both groups must match)")
        else:
            if layout is None:
                layout = {3: "vehicle/camera/file", 2: "vehicle/camera_file"}.get(len(parts))
                if layout is None:
                    raise PganError(f"{root / rel}: does not match the layouts {LAYOUTS['vehicle/camera_file']} "
                                    f"or {LAYOUTS['vehicle/camera/file']}; give --pattern with the groups "
                                    f"(?P<vehicle>...) and (?P<camera>...)")
            names = _names_from_layout(parts, layout)
            if names is None:
                raise PganError(f"{root / rel}: does not match the layout {LAYOUTS[layout]} (read from "
                                f"{images[0].rel if images else rel}); give --pattern for other layouts")
        images.append(FolderImage(p.resolve(), rel, names[0], names[1]))
    if not images:
        raise PganError(f"{root} holds no images ({len(skipped)} other files skipped; image suffixes: "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    return FolderScan(root, layout or "pattern", images, skipped)


def name_ids(names: set[str] | list[str]) -> dict[str, int]:
    """Integer ids for names: the numbers themselves if every name is a distinct decimal number, else the
    sorted names numbered from 0. ``name_ids(["2", "10"]) == {"2": 2, "10": 10}``,
    ``name_ids(["north", "east"]) == {"east": 0, "north": 1}``."""
    unique = sorted(set(names))
    if all(n.isdecimal() for n in unique) and len({int(n) for n in unique}) == len(unique):
        return {n: int(n) for n in unique}
    return {n: i for i, n in enumerate(unique)}


def assign_splits(images: list[FolderImage], seed: int = 0,
                  test_fraction: float = DEFAULT_TEST_FRACTION) -> list[SplitRow]:
    """Rows for every image, split by vehicle with ``seed`` (see the module docstring for the rules).

    ``round(test_fraction * vehicles)`` vehicles are held out (at least 1, at most the vehicles seen by
    two or more cameras, and always leaving one to train). Rows come in split order (train, query,
    gallery), then by path; a VeRi-776-rule query image is also a gallery row."""
    if not 0.0 < test_fraction < 1.0:
        raise PganError(f"--test-fraction must be between 0 and 1 (exclusive), got {test_fraction}")
    if not images:
        raise PganError("no images to split")
    vehicle_ids = name_ids({im.vehicle for im in images})
    camera_ids = name_ids({im.camera for im in images})
    if len(vehicle_ids) < 2:
        raise PganError(f"every image shows the one vehicle {images[0].vehicle!r}: a split by vehicle "
                        f"needs at least two (one to train, one to evaluate)")
    if len(camera_ids) < 2:
        raise PganError(f"every image is from the one camera {images[0].camera!r}: cross-camera evaluation "
                        f"needs at least two cameras")
    cams_of: dict[str, set[int]] = defaultdict(set)
    for im in images:
        cams_of[im.vehicle].add(camera_ids[im.camera])
    eligible = sorted((v for v, cams in cams_of.items() if len(cams) >= 2), key=vehicle_ids.__getitem__)
    if not eligible:
        raise PganError(f"no vehicle is seen by two cameras ({len(vehicle_ids)} vehicles, {len(camera_ids)} "
                        f"cameras): nothing can be evaluated across cameras")
    n_test = min(max(1, round(test_fraction * len(vehicle_ids))), len(eligible), len(vehicle_ids) - 1)
    rng = random.Random(seed)
    held_out = set(rng.sample(eligible, n_test))

    def row(im: FolderImage, split: str) -> SplitRow:
        return SplitRow(im, vehicle_ids[im.vehicle], camera_ids[im.camera], split)

    rows: dict[str, list[SplitRow]] = {s: [] for s in SPLITS}
    two_cameras = len(camera_ids) == 2
    query_camera = min(camera_ids.values())
    by_vehicle_camera: dict[tuple[int, int], list[FolderImage]] = defaultdict(list)
    for im in images:
        if im.vehicle not in held_out:
            rows["train"].append(row(im, "train"))
        elif two_cameras:
            split = "query" if camera_ids[im.camera] == query_camera else "gallery"
            rows[split].append(row(im, split))
        else:
            by_vehicle_camera[(vehicle_ids[im.vehicle], camera_ids[im.camera])].append(im)
            rows["gallery"].append(row(im, "gallery"))
    for key in sorted(by_vehicle_camera):  # one seeded query per (vehicle, camera), in a fixed order
        rows["query"].append(row(rng.choice(by_vehicle_camera[key]), "query"))
    for split in SPLITS:
        rows[split].sort(key=lambda r: r.image.rel)
    return [r for s in SPLITS for r in rows[s]]


def _rule(images: list[FolderImage]) -> str:
    ids = name_ids({im.camera for im in images})
    if len(ids) == 2:
        q, g = sorted(ids, key=ids.__getitem__)
        return f"two cameras: query = camera {q!r} (id {ids[q]}), gallery = camera {g!r} (id {ids[g]})"
    return (f"{len(ids)} cameras (VeRi-776): one seeded query per held-out vehicle and camera, "
            f"every held-out image in the gallery")


def summarize(rows: list[SplitRow]) -> SplitSummary:
    """The counts :func:`assign_splits`' rows give, per split."""
    per = {s: [r for r in rows if r.split == s] for s in SPLITS}
    cams_of: dict[int, set[int]] = defaultdict(set)
    for r in rows:
        cams_of[r.vehicle_id].add(r.camera_id)
    single = sum(1 for cams in cams_of.values() if len(cams) == 1)
    images = list({r.image.rel: r.image for r in rows}.values())
    return SplitSummary({s: len(per[s]) for s in SPLITS}, {s: len({r.vehicle_id for r in per[s]}) for s in SPLITS},
                        {s: len({r.camera_id for r in per[s]}) for s in SPLITS}, _rule(images), single)


def _csv_path(image: Path, csv_dir: Path) -> str:
    """The path the custom reader resolves: relative to the CSV's folder when the image lies under it."""
    try:
        return image.relative_to(csv_dir).as_posix()
    except ValueError:
        return image.as_posix()


def write_custom_csv(rows: list[SplitRow], out: str | Path) -> Path:
    """Write ``rows`` as the custom-dataset CSV ``out`` (atomically), with the columns :data:`CSV_COLUMNS`.

    Paths are relative to the CSV's folder for images under it, absolute otherwise, as
    :func:`pgan.data.datasets.custom_csv.read_custom_csv` reads them."""
    from pgan.utils.atomic import atomic_write_text

    out = Path(out)
    if out.is_dir():
        raise PganError(f"--out {out} is a folder; give the CSV file to write (e.g. {out / 'dataset.csv'})")
    csv_dir = out.resolve().parent
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([_csv_path(r.image.path, csv_dir), r.vehicle_id, r.camera_id, r.split,
                         r.image.vehicle, r.image.camera])
    atomic_write_text(out, buf.getvalue())
    return out
