"""Custom datasets described by one CSV file.

Format (UTF-8, comma-separated, one header line, one row per image)::

    path,vehicle_id,camera_id,split
    images/0001_a.jpg,1,3,train
    images/0001_b.jpg,1,5,train
    probe/0042.jpg,42,1,query
    /data/other/0042_x.jpg,42,2,gallery

* ``path``: the image, relative to the CSV file's folder (the dataset root) or
  absolute. Every image must exist.
* ``vehicle_id``, ``camera_id``: integers (the columns may also be named ``vehicle`` and ``camera``, the
  names the gallery CSV of :mod:`pgan.index.gallery` reads; when both are present the ``_id`` one is
  read). Use distinct camera ids per camera:
  evaluation removes gallery images with the query's identity *and* camera
  (cross-camera protocol, as for VeRi-776). If your data has no cameras, give
  every query a camera id that no gallery image uses.
* ``split``: ``train``, ``query`` or ``gallery``.

Columns may come in any order; extra columns are ignored. A row repeated in
the same split is counted once (a counted warning); the same image listed twice
in one split with different ids is an error naming both lines. ``read_custom_csv``
takes the CSV file itself or the folder holding it (named ``dataset.csv``, or
the folder's only ``.csv`` file). A record's ``key`` is its path relative to the
root in POSIX form (the absolute POSIX path for images outside the root).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from pgan.data.records import ImageRecord, ReidDataset
from pgan.errors import PganError

COLUMNS = ("path", "vehicle_id", "camera_id", "split")
ALIASES = {"vehicle_id": ("vehicle_id", "vehicle"), "camera_id": ("camera_id", "camera")}
"""The names each id column may have, the first one present is read (the index's CSV reads the same)."""
SPLITS = ("train", "query", "gallery")

log = logging.getLogger(__name__)


def _find_csv(root_or_csv: Path) -> Path:
    if root_or_csv.is_file():
        return root_or_csv
    if not root_or_csv.is_dir():
        raise PganError(f"dataset CSV or folder {root_or_csv} does not exist")
    if (root_or_csv / "dataset.csv").is_file():
        return root_or_csv / "dataset.csv"
    found = sorted(root_or_csv.glob("*.csv"))
    if len(found) != 1:
        raise PganError(f"{root_or_csv} must hold dataset.csv or exactly one .csv file "
                        f"(found {len(found)})")
    return found[0]


def _key(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def read_custom_csv(root_or_csv: str | Path) -> ReidDataset:
    """Read a dataset from a ``path,vehicle_id,camera_id,split`` CSV (see the module docstring)."""
    csv_path = _find_csv(Path(root_or_csv))
    root = csv_path.parent
    splits: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    seen: dict[tuple[str, str], tuple[int, int, int]] = {}  # (split, key) -> (line, vehicle, camera)
    duplicates = 0
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in (reader.fieldnames or [])]
        source = {c: next((a for a in ALIASES.get(c, (c,)) if a in header), None) for c in COLUMNS}
        missing = [" or ".join(ALIASES.get(c, (c,))) for c, found in source.items() if found is None]
        if missing:
            raise PganError(f"{csv_path}:1: header lacks column(s) {', '.join(missing)}; "
                            f"expected {','.join(COLUMNS)}")
        reader.fieldnames = header
        for row in reader:
            where = f"{csv_path}:{reader.line_num}"
            if None in row or any(row.get(c) is None for c in source.values()):
                raise PganError(f"{where}: expected {len(header)} fields")
            rel, split = row["path"].strip(), row["split"].strip().lower()
            ids = []
            for col in (source["vehicle_id"], source["camera_id"]):
                try:
                    ids.append(int(row[col].strip()))
                except ValueError:
                    raise PganError(f"{where}: {col} {row[col]!r} is not an integer") from None
            if split not in splits:
                raise PganError(f"{where}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
            if not rel:
                raise PganError(f"{where}: empty path")
            path = Path(rel) if Path(rel).is_absolute() else root / rel
            if not path.is_file():
                raise PganError(f"{where}: image {rel!r} not found")
            key = _key(path, root)
            first = seen.get((split, key))
            if first is not None:
                if first[1:] != (ids[0], ids[1]):
                    raise PganError(f"{where}: image {rel!r} is listed again in split {split!r} with other ids "
                                    f"(line {first[0]} gives vehicle {first[1]}, camera {first[2]})")
                duplicates += 1
                continue
            seen[(split, key)] = (reader.line_num, ids[0], ids[1])
            splits[split].append(ImageRecord(path, ids[0], ids[1], key))
    if duplicates:
        log.warning("%s: %d duplicate rows (same image, split and ids) were ignored", csv_path, duplicates)
    if not any(splits.values()):
        raise PganError(f"{csv_path} lists no images")
    return ReidDataset("custom", root, splits["train"], splits["query"], splits["gallery"],
                       meta={"csv": str(csv_path), "protocol": "custom"})
