"""benchmarks/box_head.py's own arithmetic: box IoU, overlap against chance, and its table (no training)."""

import sys

import numpy as np
import pytest

from bench_helpers import BENCHMARKS, load_benchmark


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports real_dev as it does when run
    try:
        yield load_benchmark("box_head")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_box_iou(bench):
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 1, 3, 3], [0, 0, 2, 2]], dtype=float)
    np.testing.assert_allclose(bench.box_iou(a, b), [[1 / 7, 1.0], [0.0, 0.25]])
    assert bench.box_iou(a, np.zeros((0, 4))).shape == (2, 0)


def test_overlap_against_another_photos_boxes(bench):
    props = [np.array([[0.0, 0.0, 0.5, 0.5]]), np.array([[0.5, 0.5, 1.0, 1.0]])]
    head = [np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.25, 0.25]]), np.zeros((0, 4))]
    o = bench.overlap(head, props)
    assert o["proposal_recall_iou"] == pytest.approx(0.5)  # photo 1 found exactly, photo 2 not at all
    assert o["head_precision_iou"] == pytest.approx((1.0 + 0.25) / 2)
    assert o["chance_proposal_recall_iou"] == pytest.approx(0.0)  # photo 2's boxes miss photo 1's proposal
    assert o["head_boxes_per_photo"] == 1.0 and o["proposals_per_photo"] == 1.0


def test_the_table_lists_each_seed_and_the_paired_difference(bench):
    row = {"seed": 0, "mAP_proposals": 0.9779, "mAP_head": 0.97, "proposal_recall_iou": 0.3,
           "chance_proposal_recall_iou": 0.1, "head_precision_iou": 0.4, "chance_head_precision_iou": 0.2,
           "mAP_study_same_seed": 0.9779}
    result = {"rows": [row], "summary": {"seeds": [0], "mAP_proposals_mean": 0.9779, "mAP_proposals_std": 0.0,
                                         "mAP_head_mean": 0.97, "mAP_head_std": 0.0,
                                         "mAP_head_minus_proposals": {"mean": -0.0079, "ci95": None}}}
    md = bench.markdown(result)
    assert "| 0 | 97.79 | 97.00 | -0.79 | 97.79 | – | 0.30 (0.10) | 0.40 (0.20) |" in md  # no cell figure
    assert "Paired difference head - proposals: -0.79 mAP." in md


def test_cell_overlap_compares_the_cells_the_masks_switch_on(bench):
    grid = np.zeros((2, 2, 2), dtype=np.float32)  # (D, h, w)
    head_a, prop_a = grid.copy(), grid.copy()
    head_a[0, 0, 0] = head_a[1, 0, 1] = 1.0  # cells (0,0) and (0,1)
    prop_a[0, 0, 0] = 1.0
    prop_a[1, 1, 1] = 0.5  # "fraction" masks count as on
    head_b, prop_b = grid.copy(), grid.copy()
    head_b[0, 1, 1] = 1.0
    prop_b[0, 1, 1] = 1.0
    o = bench.cell_overlap([head_a, head_b], [prop_a, prop_b])
    assert o["cell_iou"] == pytest.approx((1 / 3 + 1.0) / 2)  # photo a: 1 shared of 3 cells; photo b: exact
    # head b against proposals a: (1,1) of {(0,0),(1,1)}; head a against proposals b: 0 of 3
    assert o["chance_cell_iou"] == pytest.approx((1 / 2 + 0.0) / 2)
    assert o["head_cells_share"] == pytest.approx(3 / 8) and o["proposal_cells_share"] == pytest.approx(3 / 8)
    assert bench.cell_overlap([grid], [grid])["cell_iou"] == 1.0  # nothing marked on either side: agree


def test_the_table_carries_the_cell_overlap(bench):
    row = {"seed": 1, "mAP_proposals": 0.9, "mAP_head": 0.9, "proposal_recall_iou": 0.04,
           "chance_proposal_recall_iou": 0.03, "head_precision_iou": 0.09, "chance_head_precision_iou": 0.06,
           "cell_iou": 0.61, "chance_cell_iou": 0.42, "mask_grid": [5, 5], "proposal_size_median": [0.066, 0.039]}
    summary = {"seeds": [1], "mAP_proposals_mean": 0.9, "mAP_proposals_std": 0.0, "mAP_head_mean": 0.9,
               "mAP_head_std": 0.0, "cell_iou_mean": 0.61, "chance_cell_iou_mean": 0.42,
               "head_cells_share_mean": 0.2, "proposal_cells_share_mean": 0.3}
    md = bench.markdown({"rows": [row], "summary": summary})
    assert "| 0.61 (0.42) | 0.04 (0.03) | 0.09 (0.06) |" in md
    assert "5 x 5 mask grid: 20% by the head, 30% by the proposals" in md and "6.6% x 3.9%" in md
    assert "same photo with IoU 0.61, another photo's with 0.42." in md
    assert "barely learnt" not in md  # 0.19 over chance
    summary.update(chance_cell_iou_mean=0.58, mAP_head_minus_proposals={"mean": 0.0, "ci95": None})
    md = bench.markdown({"rows": [row], "summary": summary})
    assert "The head has barely learnt where the proposals are" in md
