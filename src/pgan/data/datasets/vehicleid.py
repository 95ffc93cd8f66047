"""VehicleID reader (PKU VehicleID, Liu et al. 2016).

Layout::

    root/image/0000001.jpg ...
    root/train_test_split/train_list.txt          "<image name without .jpg> <vehicle id>" per line
    root/train_test_split/test_list_800.txt       (small test set)
    root/train_test_split/test_list_1600.txt      (medium)
    root/train_test_split/test_list_2400.txt      (large)

VehicleID has no camera labels: every record gets ``camid = 0`` (the camera slot
is never reused for anything else) and its protocol removes no same-camera
entries. Its query / gallery split is random: one image per identity forms the
gallery, all others are queries, averaged over 10 seeded trials
(:func:`pgan.data.splits.vehicleid_trials`). The returned dataset holds
trial 0 of ``seed`` as ``query`` / ``gallery``; ``meta["test"]`` holds the whole
test list, which :func:`pgan.evaluation.evaluate_protocol` re-splits for every trial.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pgan.data.records import ImageRecord, ReidDataset
from pgan.data.splits import vehicleid_trials
from pgan.errors import PganError

TEST_SIZES = (800, 1600, 2400)


def list_lines(path: Path, num_fields: int, sep: str | None = None) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line number, fields)`` for the non-blank lines of a list file.

    Raises :class:`PganError` naming ``path:line`` when a line has the wrong
    number of fields, and naming the file when it is missing.
    """
    if not path.is_file():
        raise PganError(f"missing list file {path}")
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            fields = [f.strip() for f in line.split(sep)]
            if len(fields) != num_fields:
                raise PganError(f"{path}:{lineno}: expected {num_fields} fields, got {len(fields)}: "
                                f"{line[:80]!r}")
            yield lineno, fields


def parse_int(value: str, what: str, path: Path, lineno: int) -> int:
    """``int(value)`` or a :class:`PganError` naming ``path:line`` and the field."""
    try:
        return int(value)
    except ValueError:
        raise PganError(f"{path}:{lineno}: {what} {value!r} is not an integer") from None


def _read_list(root: Path, list_file: Path) -> list[ImageRecord]:
    img_dir = root / "image"
    records = []
    for lineno, (name, vid) in list_lines(list_file, 2):
        pid = parse_int(vid, "vehicle id", list_file, lineno)
        path = img_dir / f"{name}.jpg"
        if not path.is_file():
            raise PganError(f"{list_file}:{lineno}: image {name}.jpg not found in {img_dir}")
        records.append(ImageRecord(path, pid, 0, f"image/{name}.jpg"))
    if not records:
        raise PganError(f"{list_file} lists no images")
    return records


def read_vehicleid(root: Path, test_size: int = 2400, seed: int = 0) -> ReidDataset:
    """Read VehicleID with the ``test_size`` test list (800, 1600 or 2400 identities)."""
    root = Path(root)
    if not root.is_dir():
        raise PganError(f"dataset folder {root} does not exist")
    if int(test_size) not in TEST_SIZES:
        raise PganError(f"VehicleID test_size must be one of {TEST_SIZES}, got {test_size}")
    for folder in ("image", "train_test_split"):
        if not (root / folder).is_dir():
            raise PganError(f"missing folder {root / folder} (expected the VehicleID layout under {root})")
    split = root / "train_test_split"
    train = _read_list(root, split / "train_list.txt")
    test = _read_list(root, split / f"test_list_{int(test_size)}.txt")
    q_idx, g_idx = vehicleid_trials(test, num_trials=1, seed=seed)[0]
    return ReidDataset("vehicleid", root, train, [test[i] for i in q_idx], [test[i] for i in g_idx],
                       meta={"test": test, "test_size": int(test_size), "trial_seed": seed,
                             "protocol": "vehicleid"})
