"""Part proposals: the array implementation against the loop reference, and the same boxes for training
(``pgan parts proposals``) and for a new photo at search time."""

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgan.parts.boxfile import read_part_file
from pgan.parts.proposals import component_boxes, components, propose_boxes
from pgan.parts.proposals_reference import components_reference, propose_boxes_reference
from pgan.parts.selection import select_top_d

REAL_DEV = Path(__file__).resolve().parents[2] / "shared" / "real-dev"  # beside the checkout, as test_data_csv
D = 8


def synthetic_images(n: int = 12, seed: int = 0) -> list[np.ndarray]:
    """Grey bodies with bright and dark patches, noise, and sizes above and below the working scale."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        h, w = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        img = np.full((h, w, 3), rng.integers(60, 200, 3), dtype=np.float32)
        for _ in range(int(rng.integers(1, 8))):
            y, x = int(rng.integers(0, h - 4)), int(rng.integers(0, w - 4))
            ph, pw = int(rng.integers(3, h // 3 + 4)), int(rng.integers(3, w // 3 + 4))
            img[y:y + ph, x:x + pw] = rng.integers(0, 256, 3)
        img += rng.normal(0, 4 if i % 2 else 12, img.shape)
        out.append(img.clip(0, 255).astype(np.uint8))
    return out


def real_photos(n: int) -> list[Path]:
    if not (REAL_DEV / "images").is_dir():
        pytest.skip(f"{REAL_DEV}/images is absent")
    names = (REAL_DEV / "val.txt").read_text().split()[:n]
    return [REAL_DEV / "images" / name for name in names]


def test_component_boxes_equal_the_run_length_union_find():
    rng = np.random.default_rng(1)
    for t in range(300):
        m = rng.random((int(rng.integers(1, 50)), int(rng.integers(1, 50)))) < rng.random()
        assert components(m) == components_reference(m), t
    # A spiral: one component whose runs join only through a long chain (many hooking rounds).
    s = np.zeros((21, 21), bool)
    s[0, :] = s[:, 20] = s[20, :] = s[2:, 0] = s[2, :18] = s[2:18, 18] = s[18, 2:19] = s[4:18, 2] = True
    assert components(s) == components_reference(s) == [(0, 0, 21, 21, int(s.sum()))]
    assert component_boxes(np.zeros((4, 5), bool)).shape == (0, 5)


def test_proposals_equal_the_reference_on_synthetic_images():
    for i, img in enumerate(synthetic_images()):
        assert propose_boxes(img) == propose_boxes_reference(img), i
        assert propose_boxes(img, max_boxes=4, nms=0.3) == propose_boxes_reference(img, max_boxes=4, nms=0.3), i


def test_proposals_equal_the_reference_on_real_photos():
    photos = real_photos(40)
    found = 0
    for path in photos:
        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        new = propose_boxes(rgb)
        assert new == propose_boxes_reference(rgb), path.name
        found += len(new)
    assert found > 5 * len(photos)  # real photos do give boxes


def _custom_csv(paths: list[Path], out: Path) -> Path:
    csv_path = out / "photos.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "vehicle_id", "camera_id", "split"])
        for i, p in enumerate(paths):
            writer.writerow([str(p), i // 2 + 1, i % 2 + 1, "train"])
    return csv_path


def _training_and_serving_boxes(paths: list[Path], tmp_path: Path):
    """Boxes of the part file `pgan parts proposals` writes, and those search time computes for the same files."""
    from pgan.config import load_config
    from pgan.inference.images import decode
    from pgan.inference.parts import TestTimeParts
    from pgan.parts.proposals import propose_parts

    csv_path = _custom_csv(paths, tmp_path)
    propose_parts("custom", str(csv_path), str(tmp_path / "parts_proposals.jsonl"), progress=False, workers=1)
    written = read_part_file(tmp_path / "parts_proposals.jsonl")
    # A model trained on proposals whose part file is elsewhere: every photo is boxed as a new upload.
    elsewhere = tmp_path / "absent" / "parts_proposals.jsonl"
    cfg = load_config(None, ["model.variant=pgan", "data.part_source=proposals", f"data.num_parts={D}",
                             f"data.root={csv_path}", f"data.part_file={elsewhere}"])
    serving = TestTimeParts(cfg)
    assert serving.compute_name == "proposals"
    decoded = [decode(p) for p in paths]
    for d in decoded:
        d.path = None  # an upload has no path to look up
    return written, serving.boxes(decoded)


def _assert_same(paths, written, served):
    by_name = {Path(key).name: item for key, item in written.items()}  # keys are relative to the CSV's folder
    for path, got in zip(paths, served):
        item = by_name[path.name]
        assert (got.width, got.height) == (item.width, item.height)
        want = select_top_d(item.boxes, D)
        assert len(got.boxes) == len(want), path.name
        for a, b in zip(got.boxes, want):  # the file keeps 2 decimals of a coordinate and 4 of a score
            assert np.allclose([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2], atol=0.006), path.name
            assert abs(a.score - b.score) < 1e-4 and a.label == b.label == "proposal"


def test_training_and_search_time_give_the_same_boxes_on_real_photos(tmp_path):
    paths = real_photos(24)
    written, served = _training_and_serving_boxes(paths, tmp_path)
    assert len(written) == len(paths)
    _assert_same(paths, written, served)
    assert sum(len(p.boxes) for p in served) > 3 * len(paths)


def test_training_and_search_time_give_the_same_boxes_on_synthetic_images(tmp_path):
    paths = []
    for i, img in enumerate(synthetic_images(8, seed=5)):
        paths.append(tmp_path / f"img{i}.png")  # lossless, so the file decodes to these pixels
        Image.fromarray(img).save(paths[-1])
    written, served = _training_and_serving_boxes(paths, tmp_path)
    _assert_same(paths, written, served)


def test_large_photos_are_boxed_at_the_working_scale_and_mapped_back():
    small = np.full((96, 128, 3), 120, dtype=np.uint8)  # already at the working scale (128 px)
    small[40:52, 60:80] = (250, 30, 30)  # a red light on a grey body
    big = np.full((480, 640, 3), 120, dtype=np.uint8)  # the same scene, 5x larger
    big[200:260, 300:400] = (250, 30, 30)
    want, got = propose_boxes(small, max_boxes=4)[0], propose_boxes(big, max_boxes=4)[0]
    assert abs(want.x1 - 60) <= 3 and abs(want.x2 - 80) <= 3 and abs(want.y1 - 40) <= 3 and abs(want.y2 - 52) <= 3
    # The big photo is worked on at 128 px too; its box comes back in its own pixels, within one working pixel.
    for a, b in zip((got.x1, got.y1, got.x2, got.y2), (want.x1, want.y1, want.x2, want.y2)):
        assert abs(a - 5 * b) <= 5
    assert all(0 <= b.x1 <= b.x2 <= 640 and 0 <= b.y1 <= b.y2 <= 480 for b in propose_boxes(big))
    assert propose_boxes(big) == propose_boxes_reference(big)
