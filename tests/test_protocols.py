"""Dataset protocols (VehicleID trials, cross-camera, as listed), re-ranking and reports."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from pgan.data.records import ImageRecord
from pgan.errors import PganError
from pgan.evaluation import (
    NoMatchWarning,
    evaluate_features,
    evaluate_protocol,
    evaluate_vehicleid,
    markdown_table,
    rerank_features,
    vehicleid_trials,
    write_results_json,
)
from pgan.evaluation.streaming import normalize_features


def _records(pids, cams):
    # zero-padded keys: key order is index order
    return [ImageRecord(Path(f"{i:04d}.jpg"), int(p), int(c), f"{i:04d}.jpg")
            for i, (p, c) in enumerate(zip(pids, cams))]


def test_vehicleid_trials_are_seeded_and_valid():
    pids = np.array([3, 1, 1, 2, 3, 3, 1, 5, 2, 2, 2])
    trials = vehicleid_trials(_records(pids, [0] * len(pids)), num_trials=10, seed=4)
    assert len(trials) == 10
    for q, g in trials:
        assert sorted(pids[g].tolist()) == [1, 2, 3, 5]          # one gallery image per identity
        assert sorted(np.concatenate([q, g]).tolist()) == list(range(len(pids)))
        assert 7 not in q                                         # id 5 has one image: no query
    again = vehicleid_trials(pids, num_trials=10, seed=4)
    assert all((a[1] == b[1]).all() for a, b in zip(trials, again))
    assert len({tuple(g) for _, g in trials}) > 1                 # trials differ
    other = vehicleid_trials(pids, num_trials=10, seed=5)
    assert any((a[1] != b[1]).any() for a, b in zip(trials, other))
    with pytest.raises(PganError, match="num_trials"):
        vehicleid_trials(pids, num_trials=0)
    # with records, the split depends on the set of images, not on their order
    recs = _records(pids, [0] * len(pids))
    shuffled = [recs[i] for i in np.random.default_rng(0).permutation(len(recs))]
    for (_, g1), (_, g2) in zip(vehicleid_trials(recs, 5, seed=1), vehicleid_trials(shuffled, 5, seed=1)):
        assert {recs[i].key for i in g1} == {shuffled[i].key for i in g2}


def test_evaluate_vehicleid_values():
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(6), 4)
    # perfectly separated identities: every metric is 1 in every trial
    feats = np.eye(6)[pids] + 0.01 * rng.standard_normal((24, 6))
    res = evaluate_vehicleid(feats, pids, num_trials=3, seed=0)
    for m in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert res[m] == pytest.approx(1.0) and res[f"{m}_std"] == pytest.approx(0.0)
    assert res["num_trials"] == 3 and res["num_query"] == 18 and res["num_gallery"] == 6
    # against a per-trial evaluation written out by hand (no same-camera removal: camid 0 everywhere)
    noisy = np.eye(6)[pids] + 0.8 * rng.standard_normal((24, 6))
    res = evaluate_vehicleid(noisy, pids, num_trials=4, seed=2)
    per = []
    for q, g in vehicleid_trials(pids, num_trials=4, seed=2):
        zq, zg = np.zeros(len(q)), np.zeros(len(g))
        per.append(evaluate_features(noisy[q], noisy[g], pids[q], pids[g], zq, zg,
                                     remove_same_camera=False).to_dict())
    for m in ("rank1", "rank5", "mAP"):
        vals = [p[m] for p in per]
        assert res[m] == pytest.approx(np.mean(vals)) and res[f"{m}_std"] == pytest.approx(np.std(vals))


def test_protocol_dispatch_cross_camera_vs_as_listed():
    # one query (id 1, cam 0); gallery: its same-camera copy first, then a distractor, then a
    # cross-camera match.
    qf = np.array([[1.0, 0.0, 0.0]])
    gf = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.8, 0.0, 0.3]])
    q_rec, g_rec = _records([1], [0]), _records([1, 2, 1], [0, 1, 2])
    cross = evaluate_protocol("veri776", qf, gf, q_rec, g_rec, max_rank=3)
    listed = evaluate_protocol("vric", qf, gf, q_rec, g_rec, max_rank=3)
    assert cross.protocol == "cross-camera" and listed.protocol == "as listed"
    assert cross.metrics["mAP"] == pytest.approx(1 / 2)          # g0 removed: match at rank 1
    assert listed.metrics["mAP"] == pytest.approx((1 + 2 / 3) / 2)
    assert listed.metrics["rank1"] == 1.0 and cross.metrics["rank1"] == 0.0
    assert np.isnan(cross.metrics["rank5"])                       # beyond max_rank
    full = evaluate_protocol("veri776", qf, gf, q_rec, g_rec).metrics
    for name in ("veriwild", "custom", "synth"):
        assert evaluate_protocol(name, qf, gf, q_rec, g_rec).metrics == full
    with pytest.raises(PganError, match="valid names"):
        evaluate_protocol("market1501", qf, gf, q_rec, g_rec)
    with pytest.raises(PganError, match="3 gallery features but 2 gallery records"):
        evaluate_protocol("vric", qf, gf, q_rec, g_rec[:2])


def test_protocol_warns_with_count_of_unmatched_queries():
    qf, gf = np.eye(3)[[0, 1]], np.eye(3)
    with pytest.warns(NoMatchWarning, match="1 of 2 queries"):
        res = evaluate_protocol("veri776", qf, gf, _records([1, 1], [0, 5]), _records([1, 2, 3], [0, 1, 1]))
    assert res.num_skipped == 1 and res.to_dict()["num_skipped"] == 1


def test_protocol_vehicleid_resplits_the_test_list():
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(5), 3)
    feats = np.eye(5)[pids] + 0.5 * rng.standard_normal((15, 5))
    recs = _records(pids, [0] * 15)
    res = evaluate_protocol("vehicleid", feats[:9], feats[9:], recs[:9], recs[9:], num_trials=3)
    direct = evaluate_vehicleid(feats, pids, num_trials=3)
    assert res.to_dict()["mAP"] == pytest.approx(direct["mAP"]) and res.num_trials == 3


def classic_re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3):
    """The authors' dense reference (Zhong et al. 2017), condensed; stable argsort for ties."""
    dist = np.concatenate([np.concatenate([q_q_dist, q_g_dist], 1),
                           np.concatenate([q_g_dist.T, g_g_dist], 1)])
    dist = np.power(dist, 2).astype(np.float32)
    dist = np.transpose(1.0 * dist / np.max(dist, axis=0))
    V = np.zeros_like(dist)
    rank = np.argsort(dist, kind="stable")
    nq, n = q_g_dist.shape[0], dist.shape[0]
    kh = int(np.around(k1 / 2.0))
    for i in range(n):
        fwd = rank[i, :k1 + 1]
        recip = fwd[np.where(rank[fwd, :k1 + 1] == i)[0]]
        expansion = recip
        for c in recip:
            cf = rank[c, :kh + 1]
            crecip = cf[np.where(rank[cf, :kh + 1] == c)[0]]
            if len(np.intersect1d(crecip, recip)) > 2.0 / 3 * len(crecip):
                expansion = np.append(expansion, crecip)
        expansion = np.unique(expansion)
        w = np.exp(-dist[i, expansion])
        V[i, expansion] = w / w.sum()
    if k2 != 1:
        V = np.stack([V[rank[i, :k2]].mean(0) for i in range(n)])
    jac = np.zeros((nq, n), dtype=np.float32)
    for i in range(nq):
        tmin = np.minimum(V[i][None, :], V).sum(1)
        jac[i] = 1 - tmin / (2.0 - tmin)
    return (jac * (1 - lambda_value) + dist[:nq] * lambda_value)[:, nq:]


@pytest.mark.parametrize("nq,ng,k1,k2", [(8, 50, 20, 6), (25, 150, 20, 6), (4, 10, 20, 6), (12, 80, 7, 1)])
def test_rerank_matches_the_classic_dense_code(nq, ng, k1, k2):
    rng = np.random.default_rng(nq + ng)
    ids = rng.integers(0, 12, nq + ng)
    f = (rng.standard_normal((12, 16))[ids] + 0.8 * rng.standard_normal((nq + ng, 16))).astype(np.float32)
    q, g = normalize_features(f[:nq], "q"), normalize_features(f[nq:], "g")

    def d(a, b):
        return np.sqrt(np.maximum(2 - 2 * (a @ b.T), 0))

    ref = classic_re_ranking(d(q, g), d(q, q), d(g, g), k1, k2)
    out = rerank_features(f[:nq], f[nq:], k1=k1, k2=k2)
    assert out.shape == (nq, ng) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=2e-6)


def test_rerank_limits_and_protocol_option():
    f = np.random.default_rng(0).standard_normal((30, 8))
    with pytest.raises(PganError, match=r"needs about .* GB, above max_gb=1e-06"):
        rerank_features(f[:10], f[10:], max_gb=1e-6)
    with pytest.raises(PganError, match="k1 >= 1"):
        rerank_features(f[:10], f[10:], k1=0)
    pids = np.arange(30) % 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoMatchWarning)
        res = evaluate_protocol("vric", f[:10], f[10:], _records(pids[:10], [0] * 10),
                                _records(pids[10:], [1] * 20), rerank={"k1": 5, "k2": 2})
    assert 0.0 < res.metrics["mAP"] <= 1.0


def test_report_markdown_and_json(tmp_path):
    rows = {"veri776": {"mAP": 0.793, "mINP": 0.4, "rank1": 0.965, "rank5": 0.983, "rank10": float("nan")},
            "vehicleid": {"mAP": 0.839, "mAP_std": 0.0123, "rank1": 0.778}}
    table = markdown_table(rows, metrics=("mAP", "rank1", "rank10"))
    assert table.splitlines() == ["| run | mAP | rank1 | rank10 |", "|---|---:|---:|---:|",
                                  "| veri776 | 79.30 | 96.50 | - |",
                                  "| vehicleid | 83.90 ± 1.23 | 77.80 | - |"]
    qf, gf = np.eye(3)[[0, 1]], np.eye(3)
    res = evaluate_protocol("vric", qf, gf, _records([1, 2], [0, 0]), _records([1, 2, 3], [1, 1, 1]))
    assert "| vric | 100.00 |" in markdown_table(res)
    out = tmp_path / "sub" / "results.json"
    write_results_json(out, {"vric": res, "extra": np.float32(0.5), "cmc": np.arange(3)})
    data = json.loads(out.read_text())
    assert data["vric"]["mAP"] == 1.0 and data["vric"]["protocol"] == "as listed"
    assert data["extra"] == 0.5 and data["cmc"] == [0, 1, 2]
    assert [p.name for p in out.parent.iterdir()] == ["results.json"]   # no temporary left behind
