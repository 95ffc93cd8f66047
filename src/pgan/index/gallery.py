"""What a gallery is made of: the files of a folder, or the rows of a CSV, with what is known of each.

* A folder: every file under it (recursively, hidden files excepted), sorted by
  path. Files that are not images are not filtered here: the build tries each
  and lists the unreadable ones in the index's log. Names in the VeRi-776 style
  (``0002_c003_00030640_1.jpg``: vehicle 2, camera 3, timestamp ``00030640``)
  give their vehicle id, camera and timestamp; other names give none.
* A CSV (UTF-8, one header line): ``path`` (relative to the CSV's folder, or
  absolute), and optionally ``camera_id`` (or ``camera``), ``vehicle_id`` (or
  ``vehicle``), ``timestamp`` and ``split``: the column names and meanings of the
  custom-dataset CSV of :mod:`pgan.data.datasets.custom_csv`, which is accepted
  as is (where both names of an id are present the ``_id`` one is read). A CSV
  with a ``split`` column needs ``split=`` (``--split``): only that split's rows
  are listed, so a training CSV never puts its train and query images into a
  gallery by accident.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from pgan.errors import PganError

__all__ = ["GalleryEntry", "VERI_NAME", "csv_splits", "entry_from_name", "list_gallery"]

VERI_NAME = re.compile(r"^(\d+)_c(\d+)_(\d+)_\d+\.[A-Za-z]+$")


@dataclass(frozen=True)
class GalleryEntry:
    path: Path  # absolute
    camera: int | None = None
    vehicle_id: int | None = None
    timestamp: str | None = None


def entry_from_name(path: Path) -> GalleryEntry:
    """A gallery entry for ``path``, with the ids its VeRi-style name carries (if it has one)."""
    m = VERI_NAME.match(path.name)
    if m is None:
        return GalleryEntry(path)
    return GalleryEntry(path, camera=int(m.group(2)), vehicle_id=int(m.group(1)), timestamp=m.group(3))


def _int_or_none(value: str | None, where: str) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise PganError(f"{where}: {value!r} is not an integer") from None


def _from_csv(path: Path, split: str | None) -> list[GalleryEntry]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise PganError(f"gallery CSV {path} needs a 'path' column (header: {reader.fieldnames})")
        camera = next((c for c in ("camera_id", "camera") if c in reader.fieldnames), None)
        vehicle = next((c for c in ("vehicle_id", "vehicle") if c in reader.fieldnames), None)
        rows = list(enumerate(reader, start=2))
    if "split" in reader.fieldnames:
        split = split.lower() if split is not None else None
        present = sorted({(row.get("split") or "").strip().lower() for _, row in rows})  # as the dataset reader
        if split is None:
            raise PganError(f"gallery CSV {path} has a 'split' column ({', '.join(present)}): choose the rows "
                            f"to index with --split NAME")
        if split not in present:
            raise PganError(f"gallery CSV {path} has no rows of split {split!r} (splits: {', '.join(present)})")
        rows = [(line, row) for line, row in rows if (row.get("split") or "").strip().lower() == split]
    elif split is not None:
        raise PganError(f"--split {split!r}: gallery CSV {path} has no 'split' column (drop --split)")
    out = []
    for line, row in rows:
        where = f"{path}:{line}"
        p = Path(row["path"])
        p = p if p.is_absolute() else path.parent / p
        out.append(GalleryEntry(p.resolve(), _int_or_none(row.get(camera) if camera else None, where),
                                _int_or_none(row.get(vehicle) if vehicle else None, where),
                                row.get("timestamp") or None))
    return out


def csv_splits(source: str | Path) -> list[str]:
    """The values of ``source``'s ``split`` column, sorted: ``[]`` for a folder or a CSV without one."""
    source = Path(source)
    if not (source.is_file() and source.suffix.lower() == ".csv"):
        return []
    with open(source, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if "split" not in (reader.fieldnames or []):
            return []
        return sorted({(row.get("split") or "").strip().lower() for row in reader})


def list_gallery(source: str | Path, split: str | None = None) -> list[GalleryEntry]:
    """The gallery of a folder or a CSV file (see the module docstring); PganError if it is empty.

    ``split``: the rows of that split of a CSV with a ``split`` column (which needs it);
    ``list_gallery("my.csv", split="gallery")``."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        entries = _from_csv(source, split)
    elif split is not None and source.exists():
        raise PganError(f"--split {split!r} applies to a CSV with a 'split' column; {source} is not a .csv file")
    elif source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(source).parts))
        entries = [entry_from_name(p.resolve()) for p in files]
    elif source.exists():
        raise PganError(f"gallery {source} must be a folder of images or a .csv file")
    else:
        raise PganError(f"gallery {source} does not exist")
    if not entries:
        raise PganError(f"gallery {source} holds no files")
    seen: set[Path] = set()
    unique = [e for e in entries if not (e.path in seen or seen.add(e.path))]
    return unique
