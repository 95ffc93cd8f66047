"""VeRi-776 reader (also serves the synthetic benchmark, which writes the same layout).

Layout::

    root/image_train/0001_c001_00016450_0.jpg   {vid:04d}_c{cam:03d}_{frame:08d}_{k}.jpg
    root/image_query/...  root/image_test/...
    root/name_train.txt   root/name_query.txt   root/name_test.txt   (optional)

When a ``name_*.txt`` list exists it defines the split's images (each must exist);
otherwise every ``.jpg`` in the folder is used.
"""

from __future__ import annotations

import re
from pathlib import Path

from pgan.data.records import ImageRecord, ReidDataset
from pgan.errors import PganError

VERI_NAME = re.compile(r"^(\d+)_c(\d+)_(\d+)_(\d+)\.jpg$")

SPLITS = {"train": ("image_train", "name_train.txt"),
          "query": ("image_query", "name_query.txt"),
          "gallery": ("image_test", "name_test.txt")}


def parse_veri_name(name: str) -> tuple[int, int]:
    """``'0002_c012_00084680_1.jpg' -> (2, 12)`` (vehicle id, camera id).

    Raises :class:`PganError` for a name that does not follow the VeRi pattern.
    """
    m = VERI_NAME.match(name)
    if m is None:
        raise PganError(
            f"image name {name!r} does not follow VeRi's '{{vid}}_c{{cam}}_{{frame}}_{{k}}.jpg' pattern"
        )
    return int(m.group(1)), int(m.group(2))


def _read_split(root: Path, folder: str, list_name: str) -> list[ImageRecord]:
    img_dir = root / folder
    if not img_dir.is_dir():
        raise PganError(f"missing folder {img_dir} (expected the VeRi-776 layout under {root})")
    list_file = root / list_name
    if list_file.is_file():
        names = []
        for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            if not (img_dir / line).is_file():
                raise PganError(f"{list_file}:{lineno}: image {line!r} not found in {img_dir}")
            names.append(line)
    else:
        names = sorted(p.name for p in img_dir.glob("*.jpg"))
    records = []
    for name in names:
        pid, cam = parse_veri_name(name)
        records.append(ImageRecord(img_dir / name, pid, cam, f"{folder}/{name}"))
    if not records:
        raise PganError(f"no images found in {img_dir}")
    return records


def read_veri776(root: Path) -> ReidDataset:
    root = Path(root)
    if not root.is_dir():
        raise PganError(f"dataset folder {root} does not exist")
    parts = {split: _read_split(root, folder, lst) for split, (folder, lst) in SPLITS.items()}
    return ReidDataset("veri776", root, parts["train"], parts["query"], parts["gallery"])
