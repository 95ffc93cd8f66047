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
