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
    assert "| 0 | 97.79 | 97.00 | -0.79 | 97.79 | 0.30 (0.10) | 0.40 (0.20) |" in md
    assert "Paired difference head - proposals: -0.79 mAP." in md
