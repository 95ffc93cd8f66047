"""VRIC reader (Vehicle Re-Identification in Context, Kanaci et al. 2018).

Layout::

    root/train_images/   root/probe_images/   root/gallery_images/
    root/vric_train.txt  root/vric_probe.txt  root/vric_gallery.txt
        "<image name> <vehicle id> <camera id>" per line

2,811 train and 2,811 test identities. The protocol evaluates probe against
gallery as listed, with no same-camera removal (each probe's true match in the
gallery comes from a different camera anyway).
"""

from __future__ import annotations

from pathlib import Path

from pgan.data.datasets.vehicleid import list_lines, parse_int
from pgan.data.records import ImageRecord, ReidDataset
from pgan.errors import PganError

SPLITS = {"train": ("train_images", "vric_train.txt"),
          "query": ("probe_images", "vric_probe.txt"),
          "gallery": ("gallery_images", "vric_gallery.txt")}


def _read_split(root: Path, folder: str, list_name: str) -> list[ImageRecord]:
    img_dir = root / folder
    if not img_dir.is_dir():
        raise PganError(f"missing folder {img_dir} (expected the VRIC layout under {root})")
    list_file = root / list_name
    records = []
    for lineno, (name, vid, cam) in list_lines(list_file, 3):
        pid = parse_int(vid, "vehicle id", list_file, lineno)
        camid = parse_int(cam, "camera id", list_file, lineno)
        if not (img_dir / name).is_file():
            raise PganError(f"{list_file}:{lineno}: image {name!r} not found in {img_dir}")
        records.append(ImageRecord(img_dir / name, pid, camid, f"{folder}/{name}"))
    if not records:
        raise PganError(f"{list_file} lists no images")
    return records


def read_vric(root: Path) -> ReidDataset:
    """Read VRIC: train, probe (query) and gallery lists."""
    root = Path(root)
    if not root.is_dir():
        raise PganError(f"dataset folder {root} does not exist")
    parts = {split: _read_split(root, folder, lst) for split, (folder, lst) in SPLITS.items()}
    return ReidDataset("vric", root, parts["train"], parts["query"], parts["gallery"],
                       meta={"protocol": "vric"})
