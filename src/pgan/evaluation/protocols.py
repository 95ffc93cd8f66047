"""The evaluation protocol of each dataset.

=====================  ==========================================================
dataset                protocol
=====================  ==========================================================
veri776, synth,        query vs gallery; gallery entries with the query's identity
veriwild, custom       *and* camera are removed (cross-camera search). For
                       VERI-Wild this also drops each query's own copy, since
                       query images are part of the test list.
vric                   probe vs gallery as listed, nothing removed (a probe's true
                       matches are from other cameras anyway).
vehicleid              no cameras; per trial one random image of each identity is
                       the gallery and every other image a query; ``num_trials``
                       seeded trials (``default_rng([seed, trial])``), mean and std.
=====================  ==========================================================

Every protocol reports CMC (rank-1/5/10), mAP and mINP, and warns with a count
when some queries have no valid true match (:class:`NoMatchWarning`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pgan.data.records import ImageRecord
from pgan.data.splits import vehicleid_trials
from pgan.errors import PganError, unknown_name
from pgan.evaluation.metrics import NoMatchWarning, RankResult, evaluate_rank, to_numpy
from pgan.evaluation.streaming import evaluate_features, normalize_features

CROSS_CAMERA = ("veri776", "synth", "veriwild", "custom")
AS_LISTED = ("vric",)
TRIALS = ("vehicleid",)
METRICS = ("mAP", "mINP", "rank1", "rank5", "rank10")


@dataclass
class ProtocolResult:
    """Metrics of one dataset protocol (fractions); ``std`` is set for multi-trial protocols."""

    dataset: str
    protocol: str
    metrics: dict[str, float]
    num_query: int
    num_gallery: int
    num_skipped: int = 0
    num_trials: int = 1
    std: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset": self.dataset, "protocol": self.protocol, **self.metrics}
        out.update({f"{k}_std": v for k, v in self.std.items()})
        out.update(num_query=self.num_query, num_gallery=self.num_gallery,
                   num_skipped=self.num_skipped, num_trials=self.num_trials)
        return out


def _mean_std(results: list[RankResult]) -> tuple[dict[str, float], dict[str, float]]:
    table = np.array([[r.to_dict()[m] for m in METRICS] for r in results])
    return (dict(zip(METRICS, table.mean(0).tolist())), dict(zip(METRICS, table.std(0).tolist())))


def evaluate_vehicleid(features: Any, pids: Any, num_trials: int = 10, seed: int = 0,
                       max_rank: int = 50, rerank: dict | None = None) -> dict[str, float]:
    """VehicleID protocol on the whole test list: mean and ``*_std`` of each metric over trials."""
    return _vehicleid(features, pids, num_trials, seed, max_rank, rerank).to_dict()


def _vehicleid(features: Any, pids: Any, num_trials: int, seed: int, max_rank: int,
               rerank: dict | None, records: Sequence[ImageRecord] | None = None) -> ProtocolResult:
    feats = normalize_features(features, "features")
    pids = to_numpy(pids, "pids").astype(np.int64)
    if len(pids) != len(feats):
        raise PganError(f"{len(feats)} features but {len(pids)} identity labels")
    cams = np.zeros(len(pids), dtype=np.int64)
    results, skipped = [], 0
    trials = vehicleid_trials(pids if records is None else records, num_trials, seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoMatchWarning)
        for q, g in trials:
            results.append(_evaluate(feats[q], feats[g], pids[q], pids[g], cams[q], cams[g],
                                     max_rank, False, rerank))
            skipped += results[-1].num_skipped
    for w in caught:
        if not issubclass(w.category, NoMatchWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if skipped:
        warnings.warn(f"{skipped} queries over {num_trials} VehicleID trials have no gallery match "
                      "and were skipped", NoMatchWarning, stacklevel=3)
    mean, std = _mean_std(results)
    return ProtocolResult("vehicleid", "random gallery trials", mean, len(trials[0][0]),
                          len(trials[0][1]), skipped, num_trials, std)


def _evaluate(qf: Any, gf: Any, q_pids: np.ndarray, g_pids: np.ndarray, q_cams: np.ndarray,
              g_cams: np.ndarray, max_rank: int, remove: bool, rerank: dict | None) -> RankResult:
    if rerank is None:
        return evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank,
                                 remove_same_camera=remove)
    from pgan.evaluation.rerank import rerank_features

    dist = rerank_features(qf, gf, **rerank)
    return evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank,
                         remove_same_camera=remove)


def _labels(records: Sequence[ImageRecord], name: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(records) != n:
        raise PganError(f"{n} {name} features but {len(records)} {name} records")
    return (np.array([r.pid for r in records], dtype=np.int64),
            np.array([r.camid for r in records], dtype=np.int64))


def evaluate_protocol(dataset_name: str, qf: Any, gf: Any, query_records: Sequence[ImageRecord],
                      gallery_records: Sequence[ImageRecord], max_rank: int = 50,
                      num_trials: int = 10, seed: int = 0,
                      rerank: dict | None = None) -> ProtocolResult:
    """Evaluate features with the protocol of ``dataset_name`` (see the module docstring).

    ``rerank``: ``None`` (default) or keyword arguments for
    :func:`pgan.evaluation.rerank.rerank_features` (``{}`` for the defaults) to use
    k-reciprocal re-ranking. For VehicleID, query and gallery together must be
    the whole test list (as returned by the reader); they are re-split per trial.
    """
    nq, ng = len(to_numpy(qf, "query features")), len(to_numpy(gf, "gallery features"))
    q_pids, q_cams = _labels(query_records, "query", nq)
    g_pids, g_cams = _labels(gallery_records, "gallery", ng)
    if dataset_name in TRIALS:
        feats = np.concatenate([to_numpy(qf, "query features"), to_numpy(gf, "gallery features")])
        return _vehicleid(feats, np.concatenate([q_pids, g_pids]), num_trials, seed, max_rank, rerank,
                          list(query_records) + list(gallery_records))
    if dataset_name in CROSS_CAMERA:
        remove, protocol = True, "cross-camera"
    elif dataset_name in AS_LISTED:
        remove, protocol = False, "as listed"
    else:
        raise unknown_name("evaluation protocol for dataset", dataset_name,
                           CROSS_CAMERA + AS_LISTED + TRIALS)
    res = _evaluate(qf, gf, q_pids, g_pids, q_cams, g_cams, max_rank, remove, rerank)
    return ProtocolResult(dataset_name, protocol, res.to_dict(), nq, ng, res.num_skipped)
