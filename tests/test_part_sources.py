"""Part sources: the five sources behind one interface, round trips, converters and bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from pgan.data.records import ImageRecord
from pgan.detection.convert import coco_results_to_parts, text_dir_to_parts
from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, PartBox, read_part_file, write_part_file
from pgan.parts.masks import boxes_to_masks
from pgan.parts.official_masks import OfficialMaskParts
from pgan.parts.proposals import components, propose_boxes
from pgan.parts.selection import select_top_d
from pgan.parts.sources import PART_SOURCES, build_source, grid_boxes
from pgan.utils.grid import grid_masks

D = 8


@pytest.fixture(scope="module")
def sources(tiny_synth, tmp_path_factory):
    """Every registered source, built over the tiny synthetic benchmark."""
    import torch

    from pgan.detection.extract import extract_parts
    from pgan.detection.model import DetectorConfig, build_detector, detector_checkpoint
    from pgan.parts.extract import dataset_images
    from pgan.parts.proposals import propose_parts

    tmp = tmp_path_factory.mktemp("sources")
    records = dataset_images("synth", tiny_synth)
    gt = read_part_file(tiny_synth / "parts_gt.jsonl")
    # Official-style masks: 10 masks of 14x14 per image, one file per image.
    for rec in records:
        item = gt[rec.key]
        arr = boxes_to_masks(item.boxes, item.width, item.height, 14, 14, 10)
        path = tmp / "official" / rec.key.replace(".jpg", ".npy")
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, arr.astype(np.uint8))
    # An untrained detector is enough to exercise the detector -> file path.
    torch.manual_seed(0)
    cfg = DetectorConfig(min_size=64, max_size=128)
    torch.save(detector_checkpoint(build_detector(cfg, pretrained=False), cfg), tmp / "det.pt")
    extract_parts(tmp / "det.pt", "synth", tiny_synth, tmp / "det.jsonl", d=D, min_score=0.0, progress=False)
    propose_parts("synth", str(tiny_synth), str(tmp / "prop.jsonl"), progress=False)
    features = conv_features()
    kw = {"num_parts": D}
    built = {
        "file": build_source("file", part_file=tiny_synth / "parts_gt.jsonl", **kw),
        "detector": build_source("detector", part_file=tmp / "det.jsonl", **kw),
        "official-masks": build_source("official-masks", mask_root=tmp / "official", **kw),
        "proposals": build_source("proposals", part_file=tmp / "prop.jsonl", **kw),
        "grid": build_source("grid", **kw),
        # Written on first use from the dataset (fitted on its training split), like the proposals can be.
        "dff": build_source("dff", part_file=tmp / "parts_dff.jsonl", dataset="synth", root=tiny_synth,
                            features=lambda: features, **kw),
        "kmeans": build_source("kmeans", part_file=tmp / "parts_kmeans.jsonl", dataset="synth", root=tiny_synth,
                               features=lambda: features, **kw),
    }
    return records, built


def conv_features():
    """A seeded stand-in for an ImageNet backbone (parts know no network): ReLU(conv 8x8, stride 8)."""
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 16, 8, stride=8), torch.nn.ReLU()).eval()


@pytest.mark.parametrize("name", sorted(PART_SOURCES))
def test_every_source_feeds_the_training_dataset(sources, name):
    from pgan.data.image_dataset import ReidImageDataset

    records, built = sources
    src = built[name]
    src.check_coverage(r.key for r in records)
    for rec in records[:: len(records) // 6]:
        m = src.masks_for(rec.key, 7, 7)
        assert m.shape == (D, 7, 7) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1
    if name != "detector":  # an untrained detector may find nothing
        assert any(src.masks_for(r.key, 7, 7).any() for r in records[:5])
    ds = ReidImageDataset(records[:4], (64, 64), (4, 4), parts=src, train=True)
    item = ds[0]
    assert item["masks"].shape == (D, 4, 4) and item["image"].shape == (3, 64, 64)


def test_registry_names_and_errors(tmp_path):
    assert set(PART_SOURCES) == {"file", "detector", "official-masks", "proposals", "grid", "dff", "kmeans"}
    with pytest.raises(PganError, match="unknown part source 'ssd'.*grid"):
        build_source("ssd")
    with pytest.raises(PganError, match="'file' needs part_file"):
        build_source("file")
    with pytest.raises(PganError, match="proposal file .* does not exist"):
        build_source("proposals", part_file=tmp_path / "none.jsonl")
    with pytest.raises(PganError, match="dff part file .* does not exist.*pgan parts discover"):
        build_source("dff", part_file=tmp_path / "parts_dff.jsonl")
    with pytest.raises(PganError, match="must not use .*parts_gt.jsonl"):
        build_source("kmeans", part_file=tmp_path / "parts_gt.jsonl")


def test_boxes_file_masks_round_trip(tmp_path):
    boxes = [PartBox(10, 10, 50, 30, 0.2, "logo"), PartBox(0, 80, 160, 160, 0.9, "wheel"),
             PartBox(70, 5, 90, 25, 0.5, "plate")]
    write_part_file(tmp_path / "p.jsonl", [ImageParts("image_train/a.jpg", 160, 160, boxes)])
    src = build_source("file", part_file=tmp_path / "p.jsonl", num_parts=2)
    expected = boxes_to_masks(select_top_d(boxes, 2), 160, 160, 10, 10, 2)
    np.testing.assert_array_equal(src.masks_for("image_train/a.jpg", 10, 10), expected)
    assert src.masks_for("image_train/a.jpg", 10, 10)[0, 5:].all()  # the wheel (best score) first


def test_official_masks_lossless_and_resampled(tmp_path):
    rng = np.random.default_rng(0)
    arr = (rng.random((10, 14, 14)) > 0.7).astype(np.float32)
    (tmp_path / "image_test").mkdir()
    np.save(tmp_path / "image_test" / "0002_c002_00000002_0.npy", arr)
    src = OfficialMaskParts(tmp_path, num_parts=8)
    key = "image_test/0002_c002_00000002_0.jpg"
    np.testing.assert_array_equal(src.masks_for(key, 14, 14), arr[-8:])  # the LAST 8, unchanged
    np.testing.assert_array_equal(src.masks_for(key, 28, 28), arr[-8:].repeat(2, 1).repeat(2, 2))
    pooled = arr[-8:].reshape(8, 7, 2, 7, 2).max(axis=(2, 4))
    np.testing.assert_array_equal(src.masks_for(key, 7, 7), pooled)
    # Fewer masks than D: padded with empty masks at the end.
    np.save(tmp_path / "image_test" / "short.npy", arr[:3])
    m = src.masks_for("image_test/short.jpg", 14, 14)
    np.testing.assert_array_equal(m[:3], arr[:3])
    assert not m[3:].any()


def test_official_full_resolution_matches_box_rasterisation(tmp_path):
    """A (N, H, W) image-resolution mask of a box pools to the same cells as the box itself."""
    box = PartBox(13, 21, 40, 33)
    full = np.zeros((1, 64, 64), dtype=np.uint8)
    full[0, 21:33, 13:40] = 1
    np.save(tmp_path / "x.npy", full)
    src = OfficialMaskParts(tmp_path, num_parts=1)
    np.testing.assert_array_equal(src.masks_for("x.jpg", 8, 8), boxes_to_masks([box], 64, 64, 8, 8, 1))


def test_official_masks_bad_files(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((14, 14)))
    np.save(tmp_path / "nan.npy", np.full((2, 4, 4), np.nan))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    src = OfficialMaskParts(tmp_path)
    with pytest.raises(PganError, match=r"flat.npy has shape \(14, 14\)"):
        src.masks_for("flat.jpg", 14, 14)
    with pytest.raises(PganError, match="nan.npy holds NaN"):
        src.masks_for("nan.jpg", 4, 4)
    with pytest.raises(PganError, match="junk.npy"):
        src.masks_for("junk.jpg", 4, 4)
    with pytest.raises(PganError, match="lack image 'missing.jpg'"):
        src.check_coverage(["missing.jpg"])
    assert OfficialMaskParts(tmp_path, 3, missing="empty").masks_for("missing.jpg", 4, 4).shape == (3, 4, 4)


def test_grid_boxes_through_file_equal_grid_masks(tmp_path):
    write_part_file(tmp_path / "g.jsonl", [ImageParts("a.jpg", 160, 120, grid_boxes(160, 120, 8))])
    src = build_source("file", part_file=tmp_path / "g.jsonl", num_parts=8)
    np.testing.assert_array_equal(src.masks_for("a.jpg", 4, 8), grid_masks(4, 8, 8))
    np.testing.assert_array_equal(build_source("grid", num_parts=8).masks_for("a.jpg", 4, 8), grid_masks(4, 8, 8))


def _records(tmp_path, names=("image_train/0001_c001_00000001_0.jpg", "image_test/0002_c002_00000002_0.jpg")):
    recs = []
    for i, key in enumerate(names):
        path = tmp_path / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (100, 50)).save(path)
        recs.append(ImageRecord(path, i + 1, 1, key))
    return recs


def test_text_converter(tmp_path, caplog):
    recs = _records(tmp_path)
    txt = tmp_path / "txt" / "image_train"
    txt.mkdir(parents=True)
    (txt / "0001_c001_00000001_0.txt").write_text(
        "# label score x1 y1 x2 y2\nlogo 0.9 10 5 20 15\nwheel 0.5 -4 20 30 70\nghost 0.7 1 1 2 2\n\n")
    items, report = text_dir_to_parts(tmp_path / "txt", recs, classes=["logo", "wheel"])
    assert [it.image for it in items] == [recs[0].key]
    assert items[0].boxes == [PartBox(10, 5, 20, 15, 0.9, "logo"), PartBox(0, 20, 30, 50, 0.5, "wheel")]
    assert (items[0].width, items[0].height) == (100, 50)
    assert report.clipped == 1 and report.unknown_labels["ghost"] == 1 and report.missing == [recs[1].key]
    assert "clipped" in caplog.text and "ghost" in caplog.text
    write_part_file(tmp_path / "p.jsonl", items)  # converts into the project format
    assert read_part_file(tmp_path / "p.jsonl")[recs[0].key].boxes[0].label == "logo"
    (txt / "0001_c001_00000001_0.txt").write_text("logo 0.9 10 5 20\n")
    with pytest.raises(PganError, match=r"0001_c001_00000001_0.txt:1: expected 'label score"):
        text_dir_to_parts(tmp_path / "txt", recs)
    (txt / "0001_c001_00000001_0.txt").write_text("logo high 10 5 20 15\n")
    with pytest.raises(PganError, match="must be numbers"):
        text_dir_to_parts(tmp_path / "txt", recs)
    (txt / "0001_c001_00000001_0.txt").write_text("logo 0.9 30 5 20 15\n")
    with pytest.raises(PganError, match="x2<x1"):
        text_dir_to_parts(tmp_path / "txt", recs)


def test_coco_results_converter(tmp_path):
    recs = _records(tmp_path)
    ann = {"images": [{"id": 7, "file_name": recs[1].key}], "categories": [{"id": 3, "name": "plate"}]}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    res = [{"image_id": 7, "category_id": 3, "bbox": [10, 10, 20, 5], "score": 0.4},
           {"image_id": 7, "category_id": 3, "bbox": [0, 0, 5, 5], "score": 0.8}]
    (tmp_path / "res.json").write_text(json.dumps(res))
    items, report = coco_results_to_parts(tmp_path / "res.json", recs, tmp_path / "ann.json", max_boxes=1)
    assert len(items) == 1 and items[0].image == recs[1].key
    assert items[0].boxes == [PartBox(0, 0, 5, 5, 0.8, "plate")]
    assert report.missing == [recs[0].key]
    # String ids name the image directly (key or unique file name).
    by_name = [{"image_id": "0001_c001_00000001_0.jpg", "category_name": "logo", "bbox": [1, 2, 3, 4],
                "score": 0.5}]
    (tmp_path / "res2.json").write_text(json.dumps(by_name))
    items, _ = coco_results_to_parts(tmp_path / "res2.json", recs)
    assert items[0].image == recs[0].key and items[0].boxes[0] == PartBox(1, 2, 4, 6, 0.5, "logo")
    (tmp_path / "bad.json").write_text('[{"image_id": 7, ')
    with pytest.raises(PganError, match="bad.json: malformed JSON"):
        coco_results_to_parts(tmp_path / "bad.json", recs)
    (tmp_path / "bad.json").write_text('[{"image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1], "score": 1}]')
    with pytest.raises(PganError, match="image 99 is not an image of the dataset"):
        coco_results_to_parts(tmp_path / "bad.json", recs, tmp_path / "ann.json")
    (tmp_path / "bad.json").write_text('{"image_id": 7}')
    with pytest.raises(PganError, match="must be a JSON list"):
        coco_results_to_parts(tmp_path / "bad.json", recs)


def test_components_hand_case():
    m = np.array([[1, 1, 0, 1],
                  [0, 1, 0, 1],
                  [1, 0, 0, 1],
                  [1, 1, 1, 1]], dtype=bool)
    # The right column and bottom row join the lower-left blob (4-connectivity).
    assert sorted(components(m)) == [(0, 0, 2, 2, 3), (0, 0, 4, 4, 8)]
    assert components(np.zeros((3, 3), bool)) == []


def test_proposals_find_a_contrasting_part():
    img = np.full((96, 128, 3), 120, dtype=np.uint8)
    img[40:52, 30:50] = (250, 30, 30)  # a red light on a grey body
    boxes = propose_boxes(img, max_boxes=4)
    assert boxes and all(0 < b.score <= 1 and b.label == "proposal" for b in boxes)
    best = boxes[0]
    assert abs(best.x1 - 30) <= 3 and abs(best.x2 - 50) <= 3 and abs(best.y1 - 40) <= 3 and abs(best.y2 - 52) <= 3
    assert propose_boxes(img, max_boxes=4) == boxes  # deterministic
    assert propose_boxes(np.full((64, 64, 3), 90, np.uint8)) == []  # nothing stands out
