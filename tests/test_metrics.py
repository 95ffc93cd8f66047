"""evaluate_rank on hand-computed cases: AP / CMC / mINP, ties, skipped queries, camera removal."""

import numpy as np
import pytest

from pgan.errors import PganError
from pgan.evaluation import NoMatchWarning, RankResult, evaluate_rank
from pgan.evaluation.metrics import RankAccumulator

G_PIDS = np.array([1, 2, 1, 3, 1])
G_CAMS = np.array([0, 1, 1, 1, 1])
Q_PIDS = np.array([1, 2, 4, 3])
Q_CAMS = np.array([0, 0, 0, 1])
DIST = np.array([
    # q0 (id 1, cam 0): g0 is id 1 / cam 0 (removed under the protocol); g1 and g2 tie at 0.3,
    # g1 (a non-match) goes first because its index is lower.
    [0.1, 0.3, 0.3, 0.4, 0.2],
    # q1 (id 2): order g2 g3 g4 g1 g0 -> its only match g1 at rank 3 (0-based).
    [0.5, 0.4, 0.1, 0.2, 0.3],
    # q2 (id 4): not in the gallery -> skipped.
    [0.1, 0.1, 0.1, 0.1, 0.1],
    # q3 (id 3, cam 1): its only match g3 has camera 1 too -> skipped under the protocol;
    # without removal, all distances tie and g3 is at rank 3 by index.
    [0.2, 0.2, 0.2, 0.2, 0.2],
])


def test_hand_computed_with_same_camera_removal():
    with pytest.warns(NoMatchWarning, match="2 of 4 queries"):
        r = evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5)
    # q0 after removing g0: g4 (match) g1 g2 (match) g3 -> ranks 0, 2:
    #   AP = (1/1 + 2/3) / 2 = 5/6, INP = 2/3, first rank 0.
    # q1: rank 3: AP = 1/4, INP = 1/4, first rank 3.
    assert r.num_queries == 4 and r.num_valid_queries == 2 and r.num_skipped == 2
    assert r.mAP == pytest.approx((5 / 6 + 1 / 4) / 2)      # 13/24
    assert r.mINP == pytest.approx((2 / 3 + 1 / 4) / 2)     # 11/24
    np.testing.assert_allclose(r.cmc, [0.5, 0.5, 0.5, 1.0, 1.0])
    d = r.to_dict()
    assert d["rank1"] == 0.5 and d["rank5"] == 1.0 and np.isnan(d["rank10"])
    assert set(d) == {"mAP", "mINP", "rank1", "rank5", "rank10"}


def test_hand_computed_without_removal():
    with pytest.warns(NoMatchWarning, match="1 of 4 queries"):
        r = evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=5, remove_same_camera=False)
    # q0: g0 g4 g1 g2 g3 -> matches at 0, 1, 3: AP = (1 + 1 + 3/4) / 3 = 11/12, INP = 3/4.
    # q1: AP = INP = 1/4 (rank 3).  q3: ties broken by index -> g3 at rank 3: AP = INP = 1/4.
    assert r.num_valid_queries == 3
    assert r.mAP == pytest.approx((11 / 12 + 1 / 4 + 1 / 4) / 3)   # 17/36
    assert r.mINP == pytest.approx((3 / 4 + 1 / 4 + 1 / 4) / 3)    # 5/12
    np.testing.assert_allclose(r.cmc, [1 / 3, 1 / 3, 1 / 3, 1.0, 1.0])


def test_ties_are_broken_by_gallery_index():
    # Two gallery items at the same distance: the match comes first only if its index is lower.
    first = evaluate_rank(np.array([[0.5, 0.5]]), [7], [7, 8], [0], [1, 1], max_rank=2)
    second = evaluate_rank(np.array([[0.5, 0.5]]), [7], [8, 7], [0], [1, 1], max_rank=2)
    assert first.mAP == 1.0 and first.cmc.tolist() == [1.0, 1.0]
    assert second.mAP == 0.5 and second.cmc.tolist() == [0.0, 1.0]


def test_docstring_example_and_torch_input():
    torch = pytest.importorskip("torch")
    d = torch.tensor([[0.1, 0.5, 0.3]])
    r = evaluate_rank(d, torch.tensor([1]), torch.tensor([2, 1, 1]), torch.tensor([0]),
                      torch.tensor([1, 1, 1]), max_rank=3)
    assert r.mAP == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0]
    assert r.mINP == pytest.approx(2 / 3)


def test_perfect_and_worst_ranking():
    dist = np.array([[0.0, 1.0, 2.0, 3.0]])
    best = evaluate_rank(dist, [1], [1, 1, 2, 2], [0], [1, 1, 1, 1], max_rank=4)
    worst = evaluate_rank(dist, [2], [1, 1, 2, 2], [0], [1, 1, 1, 1], max_rank=4)
    assert (best.mAP, best.mINP) == (1.0, 1.0)
    assert worst.mAP == pytest.approx((1 / 3 + 2 / 4) / 2) and worst.mINP == pytest.approx(2 / 4)
    assert worst.cmc.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_errors_name_the_problem():
    with pytest.raises(PganError, match="g_pids has 4 entries but there are 5 gallery"):
        evaluate_rank(DIST, Q_PIDS, G_PIDS[:4], Q_CAMS, G_CAMS)
    with pytest.raises(PganError, match="q_camids has 3 entries"):
        evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS[:3], G_CAMS)
    bad = DIST.copy()
    bad[1, 2] = np.nan
    with pytest.raises(PganError, match="row 1 contains NaN"):
        evaluate_rank(bad, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS)
    with pytest.raises(PganError, match="gallery is empty"):
        evaluate_rank(np.zeros((2, 0)), [1, 2], [], [0, 0], [])
    with pytest.raises(PganError, match="query set is empty"):
        evaluate_rank(np.zeros((0, 3)), [], [1, 2, 3], [], [0, 0, 0])
    with pytest.raises(PganError, match="2-D"):
        evaluate_rank(np.zeros(3), [1], [1, 2, 3], [0], [0, 0, 0])
    with pytest.raises(PganError, match="none of the 1 queries"):
        evaluate_rank(np.zeros((1, 2)), [5], [1, 2], [0], [0, 0])
    with pytest.raises(PganError, match="max_rank"):
        evaluate_rank(DIST, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=0)
    with pytest.raises(PganError, match="integers"):
        evaluate_rank(DIST, Q_PIDS + 0.5, G_PIDS, Q_CAMS, G_CAMS)


def test_accumulator_batches_add_up():
    acc = RankAccumulator(max_rank=3)
    acc.add(np.array([0, 2, 1]), np.array([2, 0, 1]))   # q0: ranks 0, 2; q1 skipped; q2: rank 1
    acc.add(np.array([5]), np.array([1]))                # q3: rank 5 (beyond max_rank)
    with pytest.warns(NoMatchWarning, match="1 of 4"):
        r = acc.result()
    assert isinstance(r, RankResult) and r.num_valid_queries == 3
    assert r.mAP == pytest.approx(((1 + 2 / 3) / 2 + 1 / 2 + 1 / 6) / 3)
    assert r.mINP == pytest.approx((2 / 3 + 1 / 2 + 1 / 6) / 3)
    np.testing.assert_allclose(r.cmc, [1 / 3, 2 / 3, 2 / 3])
