import json

import numpy as np
import pytest

from pgan.errors import PganError
from pgan.parts.boxfile import ImageParts, PartBox, read_part_file, write_part_file
from pgan.parts.masks import box_to_mask, boxes_to_masks
from pgan.parts.selection import select_top_d
from pgan.parts.sources import BoxFileParts
from pgan.utils.grid import grid_masks


def test_part_file_round_trip_to_masks(tmp_path):
    items = [ImageParts("image_train/a.jpg", 160, 160, [PartBox(0, 0, 16, 16, 0.9, "logo"),
                                                        PartBox(80, 80, 160, 160, 0.5, "wheel")]),
             ImageParts("image_test/b.jpg", 100, 50, [])]
    path = tmp_path / "parts.jsonl"
    assert write_part_file(path, items) == 2
    back = read_part_file(path)
    assert back["image_train/a.jpg"].boxes[1] == PartBox(80, 80, 160, 160, 0.5, "wheel")
    assert back["image_test/b.jpg"].boxes == []
    src = BoxFileParts(path, num_parts=3)
    m = src.masks_for("image_train/a.jpg", 10, 10)
    assert m.shape == (3, 10, 10)
    assert m[0].sum() == 1 and m[0, 0, 0] == 1  # 16 px box on a 16 px cell grid -> exactly one cell
    assert m[1].sum() == 25 and m[1, 5:, 5:].all()
    assert m[2].sum() == 0  # padding
    assert src.masks_for("image_test/b.jpg", 10, 10).sum() == 0


def test_part_file_errors_and_clipping(tmp_path, caplog):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"image": "x.jpg", "width": 10, "height": 10,
                                "boxes": [[-5, 2, 30, 8, 1.0, "logo"]]}) + "\n")
    assert read_part_file(path)["x.jpg"].boxes[0] == PartBox(0, 2, 10, 8, 1.0, "logo")
    assert "clipped" in caplog.text
    path.write_text(json.dumps({"image": "x.jpg", "width": 10, "height": 10,
                                "boxes": [[5, 2, 3, 8, 1.0, "logo"]]}) + "\n")
    with pytest.raises(PganError, match=r"p.jsonl:1: .*x2<x1"):
        read_part_file(path)
    # A truncated last line (interrupted append) is skipped, earlier lines kept.
    good = json.dumps({"image": "a.jpg", "width": 10, "height": 10, "boxes": []})
    path.write_text(good + "\n" + good[:20])
    assert list(read_part_file(path)) == ["a.jpg"]
    path.write_text("not json\n" + good + "\n")
    with pytest.raises(PganError, match="p.jsonl:1"):
        read_part_file(path)


def test_missing_image_in_part_file(tmp_path):
    path = tmp_path / "p.jsonl"
    write_part_file(path, [ImageParts("a.jpg", 10, 10, [])])
    with pytest.raises(PganError, match="lacks image 'b.jpg'"):
        BoxFileParts(path).check_coverage(["a.jpg", "b.jpg"])
    lenient = BoxFileParts(path, num_parts=2, missing="empty")
    lenient.check_coverage(["b.jpg"])
    assert lenient.masks_for("b.jpg", 4, 4).shape == (2, 4, 4)


def test_select_top_d_ignores_labels_and_is_stable():
    boxes = [PartBox(0, 0, 1, 1, s, lab) for s, lab in [(0.2, "a"), (0.9, "b"), (0.5, "a"), (0.9, "c")]]
    top = select_top_d(boxes, 3)
    assert [b.label for b in top] == ["b", "c", "a"]
    assert [b.score for b in top] == [0.9, 0.9, 0.5]
    assert len(select_top_d(boxes, 10)) == 4


def test_box_to_mask_clips_and_covers_partial_cells():
    m = box_to_mask(PartBox(150, 150, 400, 400), 160, 160, 10, 10)
    assert m.sum() == 1 and m[9, 9] == 1
    # A box inside one cell still switches that cell on; a box straddling two cells gets both.
    assert box_to_mask(PartBox(3, 3, 5, 5), 160, 160, 10, 10).sum() == 1
    assert box_to_mask(PartBox(14, 0, 18, 8), 160, 160, 10, 10)[0, :2].sum() == 2
    assert box_to_mask(PartBox(200, 200, 300, 300), 160, 160, 10, 10).sum() == 0  # fully outside


def test_fraction_masks_hold_each_cells_covered_share(tmp_path):
    # 160 px on a 10 x 10 map: cells of 16 px. x 8-40 is cells 0.5-2.5, y 4-16 is cells 0.25-1.0.
    box = PartBox(8, 4, 40, 16, 0.9, "sticker")
    m = box_to_mask(box, 160, 160, 10, 10, mode="fraction")
    expected = np.zeros((10, 10), np.float32)
    expected[0, :3] = [0.375, 0.75, 0.375]  # (0.5, 1, 0.5) of the width x 0.75 of the height
    np.testing.assert_array_equal(m, expected)
    assert m.sum() == 32 * 12 / 16 ** 2  # the box's area in cells
    any_overlap = box_to_mask(box, 160, 160, 10, 10)
    assert any_overlap[0, :3].tolist() == [1, 1, 1] and any_overlap.sum() == 3
    clipped = box_to_mask(PartBox(150, 150, 400, 400), 160, 160, 10, 10, mode="fraction")
    assert clipped[9, 9] == 0.625 ** 2 and clipped.sum() == 0.625 ** 2  # 10 of the cell's 16 px each way
    assert box_to_mask(PartBox(0, 0, 160, 160), 160, 160, 10, 10, mode="fraction").min() == 1
    assert box_to_mask(PartBox(200, 200, 300, 300), 160, 160, 10, 10, mode="fraction").sum() == 0
    with pytest.raises(ValueError, match="mask mode 'half'"):
        box_to_mask(box, 160, 160, 10, 10, mode="half")
    # The box-file source rasterises as asked; the default stays binary.
    write_part_file(tmp_path / "p.jsonl", [ImageParts("a.jpg", 160, 160, [box])])
    frac = BoxFileParts(tmp_path / "p.jsonl", num_parts=2, mask_mode="fraction").masks_for("a.jpg", 10, 10)
    np.testing.assert_array_equal(frac, boxes_to_masks([box], 160, 160, 10, 10, 2, mode="fraction"))
    np.testing.assert_array_equal(frac[0], expected)
    assert BoxFileParts(tmp_path / "p.jsonl", num_parts=2).masks_for("a.jpg", 10, 10).sum() == 3
    with pytest.raises(PganError, match="data.mask_mode='half' must be one of any, fraction"):
        BoxFileParts(tmp_path / "p.jsonl", mask_mode="half")


def test_mask_mode_reaches_training_and_test_time_masks(tiny_synth, tmp_path):
    from pgan.config import load_config
    from pgan.engine.build import build_part_source, validate_config
    from pgan.inference.parts import TestTimeParts

    with pytest.raises(PganError, match="^data.mask_mode='half' must be one of any, fraction$"):
        validate_config(load_config(None, ["data.mask_mode=half"]))
    cfg = load_config(None, [f"data.root={tiny_synth}", "model.variant=nopam", "data.mask_mode=fraction",
                             f"run.out_dir={tmp_path}"])
    src = build_part_source(cfg)
    key, item = next(iter(read_part_file(tiny_synth / "parts_gt.jsonl").items()))
    top = select_top_d(item.boxes, 8)
    expected = boxes_to_masks(top, item.width, item.height, 7, 7, 8, mode="fraction")
    np.testing.assert_array_equal(src.masks_for(key, 7, 7), expected)
    assert ((expected > 0) & (expected < 1)).any()  # really fractional
    test_time = TestTimeParts(cfg).masks([ImageParts(key, item.width, item.height, top)], (7, 7))
    np.testing.assert_array_equal(test_time[0], expected)


def test_boxes_to_masks_pads():
    out = boxes_to_masks([PartBox(0, 0, 8, 8)], 16, 16, 2, 2, d=4)
    assert out.shape == (4, 2, 2)
    np.testing.assert_array_equal(out[0], [[1, 0], [0, 0]])
    assert out[1:].sum() == 0


def test_grid_masks_partition_the_map():
    g = grid_masks(10, 10, 8)
    assert g.shape == (8, 10, 10)
    np.testing.assert_array_equal(g.sum(0), np.ones((10, 10)))
    assert all(g[i].sum() > 0 for i in range(8))
