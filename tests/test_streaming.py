"""evaluate_features (streaming, no full matrix) agrees with evaluate_rank and a brute-force reference."""

import warnings

import numpy as np
import pytest

from pgan.errors import PganError
from pgan.evaluation import NoMatchWarning, evaluate_features, evaluate_rank
from pgan.evaluation.streaming import _desc_codes, normalize_features


def exact_unit_features(rng, n, dim=64):
    """Unit vectors with dyadic entries (1/2, 1/4, 1/8): every dot product is exact in float32,
    so similarities tie exactly and rankings cannot depend on rounding."""
    out = np.zeros((n, dim), dtype=np.float32)
    for i in range(n):
        a = rng.integers(0, 4)
        b = rng.integers(0, (64 - 16 * a) // 4 + 1)
        c = 64 - 16 * a - 4 * b
        while a + b + c > dim:
            b += 1
            c -= 4
        vals = np.concatenate([np.full(a, 0.5), np.full(b, 0.25), np.full(c, 0.125)])
        idx = rng.choice(dim, len(vals), replace=False)
        out[i, idx] = vals * rng.choice([-1.0, 1.0], len(vals))
    return out


def brute_force(sim, q_pids, g_pids, q_cams, g_cams, max_rank, remove):
    """Plain-python reference: sort by (-similarity, index), drop same id+camera, score."""
    aps, inps, cmc, valid = [], [], np.zeros(max_rank), 0
    for i in range(len(q_pids)):
        order = sorted(range(len(g_pids)), key=lambda j: (-float(sim[i, j]), j))
        if remove:
            order = [j for j in order if not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hits = [r for r, j in enumerate(order) if g_pids[j] == q_pids[i]]
        if not hits:
            continue
        valid += 1
        aps.append(np.mean([(k + 1) / (r + 1) for k, r in enumerate(hits)]))
        inps.append(len(hits) / (hits[-1] + 1))
        cmc[hits[0]:] += 1
    return np.mean(aps), np.mean(inps), cmc / valid, valid


def random_problem(seed, exact=True, nq=None, ng=None):
    rng = np.random.default_rng(seed)
    nq = nq or int(rng.integers(1, 25))
    ng = ng or int(rng.integers(2, 120))
    ids = rng.integers(0, max(2, ng // 5), nq + ng)
    cams = rng.integers(0, 3, nq + ng)
    if exact:
        f = exact_unit_features(rng, nq + ng)
        f[rng.random(nq + ng) < 0.05] = 0.0           # zero vectors: similarity 0 to all
        dup = rng.random(nq + ng) < 0.2                  # exact duplicates: more ties
        f[dup] = f[rng.integers(0, nq + ng, int(dup.sum()))]
    else:
        centres = rng.standard_normal((ids.max() + 1, 32))
        f = (centres[ids] + 1.5 * rng.standard_normal((nq + ng, 32))).astype(np.float32)
    return f[:nq], f[nq:], ids[:nq], ids[nq:], cams[:nq], cams[nq:]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        try:
            return fn(*args, **kwargs)
        except PganError as exc:
            return str(exc)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("remove", [True, False])
def test_agrees_with_brute_force_on_ties(seed, remove):
    qf, gf, qp, gp, qc, gc = random_problem(seed)
    sim = normalize_features(qf, "q") @ normalize_features(gf, "g").T
    ref = _quiet(evaluate_rank, 1.0 - sim, qp, gp, qc, gc, max_rank=10, remove_same_camera=remove)
    if isinstance(ref, str):   # no valid query at all: both must say so
        assert ref.startswith("none of the")
    else:
        bf = brute_force(sim, qp, gp, qc, gc, 10, remove)
        assert (ref.mAP, ref.mINP, ref.num_valid_queries) == pytest.approx(bf[:2] + (bf[3],), abs=1e-12)
        np.testing.assert_allclose(ref.cmc, bf[2], atol=1e-12)
    for method in ("auto", "sparse", "count", "dense"):
        for chunk in (1, 4, None):
            got = _quiet(evaluate_features, qf, gf, qp, gp, qc, gc, max_rank=10, remove_same_camera=remove,
                         chunk_size=chunk, method=method)
            if isinstance(ref, str):
                assert got == ref
                continue
            assert got.num_valid_queries == ref.num_valid_queries
            assert abs(got.mAP - ref.mAP) < 1e-12 and abs(got.mINP - ref.mINP) < 1e-12
            np.testing.assert_allclose(got.cmc, ref.cmc, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_agrees_on_continuous_features(seed):
    qf, gf, qp, gp, qc, gc = random_problem(100 + seed, exact=False, nq=40, ng=600)
    sim = normalize_features(qf, "q") @ normalize_features(gf, "g").T
    ref = _quiet(evaluate_rank, -sim, qp, gp, qc, gc)
    for method in ("sparse", "count", "dense", "auto"):
        got = _quiet(evaluate_features, qf, gf, qp, gp, qc, gc, chunk_size=7, method=method)
        assert abs(got.mAP - ref.mAP) < 1e-5 and abs(got.mINP - ref.mINP) < 1e-5
        np.testing.assert_allclose(got.cmc, ref.cmc, atol=1e-5)


def test_hand_computed_features_with_removal_and_skip():
    # 2-d unit features; similarities to q0 = (1, 0): g0 1.0, g1 0.6, g2 0.6, g3 0.0, g4 -1.0.
    gf = np.array([[1, 0], [0.6, 0.8], [0.6, -0.8], [0, 1], [-1, 0]], dtype=np.float32)
    qf = np.array([[2.0, 0.0], [0.0, 1.0]], dtype=np.float32)   # q0 is normalised inside
    g_pids, g_cams = [1, 2, 1, 1, 3], [0, 0, 1, 1, 1]
    # q0 (id 1, cam 0): g0 removed (id 1, cam 0); order g1 g2 g3 g4 (g1/g2 tie -> by index),
    #   matches g2 g3 at ranks 1, 2: AP = (1/2 + 2/3)/2 = 7/12, INP = 2/3, first rank 1.
    # q1 (id 9): no match -> skipped with a warning.
    with pytest.warns(NoMatchWarning, match="1 of 2 queries"):
        r = evaluate_features(qf, gf, [1, 9], g_pids, [0, 0], g_cams, max_rank=5)
    assert r.mAP == pytest.approx(7 / 12) and r.mINP == pytest.approx(2 / 3)
    assert r.cmc.tolist() == [0.0, 1.0, 1.0, 1.0, 1.0]


def test_torch_inputs():
    torch = pytest.importorskip("torch")
    qf, gf, qp, gp, qc, gc = random_problem(5, nq=10, ng=80)
    a = _quiet(evaluate_features, qf, gf, qp, gp, qc, gc)
    b = _quiet(evaluate_features, *(torch.as_tensor(x) for x in (qf, gf, qp, gp, qc, gc)))
    assert a.to_dict() == b.to_dict()


def test_desc_codes_order_floats_descending():
    vals = np.array([1.0, 0.5, 1e-30, 0.0, -0.0, -1e-30, -0.5, -1.0, np.float32(3.4e38)], dtype=np.float32)
    codes = _desc_codes(vals + np.float32(0.0))
    assert list(np.argsort(codes, kind="stable")) == [8, 0, 1, 2, 3, 4, 5, 6, 7]
    assert codes[3] == codes[4]  # -0.0 and +0.0 tie


def test_validation_errors():
    qf, gf = np.ones((2, 4), np.float32), np.ones((3, 4), np.float32)
    labels = ([1, 2], [1, 2, 3], [0, 0], [1, 1, 1])
    with pytest.raises(PganError, match="g_pids has 2 entries but there are 3 gallery"):
        evaluate_features(qf, gf, [1, 2], [1, 2], [0, 0], [1, 1, 1])
    bad = gf.copy()
    bad[2, 1] = np.nan
    with pytest.raises(PganError, match=r"gallery features contain NaN or infinite values \(first at row 2;"):
        evaluate_features(qf, bad, *labels)
    bad = qf.copy()
    bad[1, 0] = np.inf
    with pytest.raises(PganError, match="query features contain NaN"):
        evaluate_features(bad, gf, *labels)
    with pytest.raises(PganError, match="gallery is empty"):
        evaluate_features(qf, np.zeros((0, 4)), [1, 2], [], [0, 0], [])
    with pytest.raises(PganError, match="query set is empty"):
        evaluate_features(np.zeros((0, 4)), gf, [], [1, 2, 3], [], [1, 1, 1])
    with pytest.raises(PganError, match="4 dims but gallery features have 5"):
        evaluate_features(qf, np.ones((3, 5)), *labels)
    with pytest.raises(PganError, match="must be 2-D"):
        evaluate_features(np.ones(4), gf, [1], [1, 2, 3], [0], [1, 1, 1])
    with pytest.raises(PganError, match="chunk_size"):
        evaluate_features(qf, gf, *labels, chunk_size=0)
    with pytest.raises(PganError, match="unknown ranking method"):
        evaluate_features(qf, gf, *labels, method="fast")


@pytest.mark.parametrize("exact", [True, False])
def test_auto_on_a_sampled_gallery_mixes_all_paths(exact, monkeypatch):
    import pgan.evaluation.streaming as st

    qf, gf, qp, gp, qc, gc = random_problem(7, exact=exact, nq=50, ng=st.SAMPLE_MIN_GALLERY + 500)
    used = {}
    for name in ("_ahead_sparse", "_ahead_counted", "_ahead_sorted_rows"):
        fn = getattr(st, name)

        def spy(*a, _fn=fn, _n=name, **k):
            used[_n] = True
            return _fn(*a, **k)

        monkeypatch.setattr(st, name, spy)
    monkeypatch.setattr(st, "SORT_AT", 2)
    auto = _quiet(evaluate_features, qf, gf, qp, gp, qc, gc, chunk_size=16)
    assert set(used) == {"_ahead_sparse", "_ahead_counted", "_ahead_sorted_rows"}
    sim = normalize_features(qf, "q") @ normalize_features(gf, "g").T
    ref = _quiet(evaluate_rank, -sim, qp, gp, qc, gc)
    assert abs(auto.mAP - ref.mAP) < 1e-12 and abs(auto.mINP - ref.mINP) < 1e-12
    np.testing.assert_allclose(auto.cmc, ref.cmc, atol=1e-12)


def test_threads_do_not_change_the_result():
    qf, gf, qp, gp, qc, gc = random_problem(11, exact=False, nq=37, ng=900)
    one = _quiet(evaluate_features, qf, gf, qp, gp, qc, gc, chunk_size=10, num_threads=1)
    three = _quiet(evaluate_features, qf, gf, qp, gp, qc, gc, chunk_size=10, num_threads=3)
    assert one.to_dict() == three.to_dict() and one.num_valid_queries == three.num_valid_queries
