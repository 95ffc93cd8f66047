"""VERI-Wild reader (Lou et al. 2019).

Layout::

    root/images/<vid>/<image id>.jpg
    root/train_test_split/train_list.txt                  "<vid>/<image id>" per line
    root/train_test_split/test_{3000,5000,10000}.txt       gallery of the small / medium / large test set
    root/train_test_split/test_{3000,5000,10000}_query.txt queries
    root/train_test_split/vehicle_info.txt
        "<vid>/<image id>;<camera id>;<time>;<model>;<type>;<color>" (a header line is allowed)

The camera of every image comes from ``vehicle_info.txt``. The gallery is the
whole test list and the queries are the query list; **query images also appear in
the test list**. The VERI-Wild protocol removes gallery entries with the query's
identity and camera, which drops each query's own copy (same image, same camera)
together with its other same-camera images.
"""

from __future__ import annotations

from pathlib import Path

from pgan.data.datasets.vehicleid import list_lines, parse_int
from pgan.data.records import ImageRecord, ReidDataset
from pgan.errors import PganError

SIZES = {"small": 3000, "medium": 5000, "large": 10000}


def read_vehicle_info(path: Path) -> dict[str, int]:
    """``{"<vid>/<image id>": camera id}`` from ``vehicle_info.txt`` (first line may be a header)."""
    if not path.is_file():
        raise PganError(f"missing camera file {path}")
    cams: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.split(";")
            if len(fields) < 2:
                raise PganError(f"{path}:{lineno}: expected '<vid>/<image id>;<camera id>;...', "
                                f"got {line[:80]!r}")
            if lineno == 1 and not fields[1].strip().lstrip("-").isdigit():
                continue  # header
            cams[fields[0].strip()] = parse_int(fields[1].strip(), "camera id", path, lineno)
    if not cams:
        raise PganError(f"{path} lists no images")
    return cams


def _read_list(root: Path, list_file: Path, cams: dict[str, int]) -> list[ImageRecord]:
    img_dir = root / "images"
    records = []
    for lineno, (item,) in list_lines(list_file, 1):
        vid, sep, image = item.partition("/")
        if not sep or not image or "/" in image:
            raise PganError(f"{list_file}:{lineno}: expected '<vid>/<image id>', got {item!r}")
        pid = parse_int(vid, "vehicle id", list_file, lineno)
        if item not in cams:
            raise PganError(f"{list_file}:{lineno}: image {item!r} has no camera in vehicle_info.txt")
        key = f"images/{item}.jpg"
        if not (root / key).is_file():
            raise PganError(f"{list_file}:{lineno}: image {item}.jpg not found in {img_dir}")
        records.append(ImageRecord(root / key, pid, cams[item], key))
    if not records:
        raise PganError(f"{list_file} lists no images")
    return records


def read_veriwild(root: Path, size: str = "small") -> ReidDataset:
    """Read VERI-Wild with the ``size`` test set ("small", "medium" or "large")."""
    root = Path(root)
    if not root.is_dir():
        raise PganError(f"dataset folder {root} does not exist")
    if size not in SIZES:
        raise PganError(f"VERI-Wild size must be one of {', '.join(SIZES)}, got {size!r}")
    for folder in ("images", "train_test_split"):
        if not (root / folder).is_dir():
            raise PganError(f"missing folder {root / folder} (expected the VERI-Wild layout under {root})")
    split = root / "train_test_split"
    cams = read_vehicle_info(split / "vehicle_info.txt")
    n = SIZES[size]
    train = _read_list(root, split / "train_list.txt", cams)
    gallery = _read_list(root, split / f"test_{n}.txt", cams)
    query = _read_list(root, split / f"test_{n}_query.txt", cams)
    return ReidDataset("veriwild", root, train, query, gallery,
                       meta={"size": size, "protocol": "veriwild", "query_in_gallery": True})
