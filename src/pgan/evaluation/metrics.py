"""Rank metrics (CMC, mAP, mINP) from a query x gallery distance matrix.

:func:`evaluate_rank` is the plain reference: a pure function of numpy arrays in
the shape torchreid made common, ``(distmat, q_pids, g_pids, q_camids, g_camids)``.
:func:`pgan.evaluation.evaluate_features` computes the same numbers from features
without ever holding the full matrix.

Definitions, for one query with its gallery ranked by increasing distance and the
excluded entries removed (see below); ``r_1 < r_2 < ... < r_P`` are the 0-based
ranks of its ``P`` true matches:

* CMC@k: 1 if ``r_1 < k``; averaged over queries.
* AP = mean over i of ``i / (r_i + 1)`` (precision at each true match).
* INP = ``P / (r_P + 1)`` (precision at the hardest true match), Ye et al. 2021.

**Ties** are broken deterministically: by distance, then by gallery index (the
order of a stable sort). **Same-camera removal** (VeRi-776 / VERI-Wild
protocol): gallery entries with the query's identity *and* camera are dropped.
A query with no remaining true match is skipped, counted, and reported with a
warning; all metrics average over the valid queries only.

Example::

    >>> import numpy as np
    >>> d = np.array([[0.1, 0.5, 0.3]])
    >>> r = evaluate_rank(d, np.array([1]), np.array([2, 1, 1]), np.array([0]), np.array([1, 1, 1]),
    ...                   max_rank=3)
    >>> round(r.mAP, 4), r.cmc.tolist()        # matches at ranks 1 and 2: AP = (1/2 + 2/3) / 2
    (0.5833, [0.0, 1.0, 1.0])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from pgan.errors import PganError


class NoMatchWarning(UserWarning):
    """Some queries had no valid true match in the gallery and were skipped."""


@dataclass
class RankResult:
    """Retrieval metrics; ``cmc``, ``mAP`` and ``mINP`` are fractions in [0, 1]."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int
    num_queries: int

    @property
    def num_skipped(self) -> int:
        """Queries without any valid true match in the gallery."""
        return self.num_queries - self.num_valid_queries

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based); NaN when ``k`` exceeds ``max_rank``."""
        return float(self.cmc[k - 1]) if 1 <= k <= len(self.cmc) else float("nan")

    def to_dict(self) -> dict[str, float]:
        return {"mAP": float(self.mAP), "mINP": float(self.mINP), "rank1": self.rank(1),
                "rank5": self.rank(5), "rank10": self.rank(10)}


def to_numpy(x: Any, name: str) -> np.ndarray:
    """Turn a numpy array, torch tensor or sequence into a numpy array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise PganError(f"{name} cannot be read as an array: {exc}") from None


def check_labels(q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                 num_query: int, num_gallery: int) -> tuple[np.ndarray, ...]:
    """Validate identity / camera labels against the problem size; return int64 arrays."""
    out = []
    for name, arr, n in (("q_pids", q_pids, num_query), ("g_pids", g_pids, num_gallery),
                         ("q_camids", q_camids, num_query), ("g_camids", g_camids, num_gallery)):
        a = to_numpy(arr, name)
        if a.ndim != 1:
            raise PganError(f"{name} must be one-dimensional, got shape {a.shape}")
        if len(a) != n:
            side = "query" if name.startswith("q") else "gallery"
            raise PganError(f"{name} has {len(a)} entries but there are {n} {side} items")
        if a.dtype.kind not in "iub":
            if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
                a = a.astype(np.int64)
            else:
                raise PganError(f"{name} must hold integers, got dtype {a.dtype}")
        out.append(a.astype(np.int64, copy=False))
    return tuple(out)


def check_sizes(num_query: int, num_gallery: int) -> None:
    if num_query == 0:
        raise PganError("the query set is empty")
    if num_gallery == 0:
        raise PganError("the gallery is empty")


def _check_max_rank(max_rank: int) -> int:
    if int(max_rank) < 1:
        raise PganError(f"max_rank must be at least 1, got {max_rank}")
    return int(max_rank)


class RankAccumulator:
    """Collects per-query ranks of true matches and turns them into a :class:`RankResult`.

    ``add(ranks, counts)``: ``counts[i]`` valid true matches for query ``i`` of a
    batch, whose sorted 0-based ranks are the next ``counts[i]`` entries of
    ``ranks``. A count of 0 marks a skipped query.
    """

    def __init__(self, max_rank: int):
        self.max_rank = _check_max_rank(max_rank)
        self.first_hist = np.zeros(self.max_rank, dtype=np.int64)
        self.ap_sum = 0.0
        self.inp_sum = 0.0
        self.num_valid = 0
        self.num_queries = 0

    def add(self, ranks: np.ndarray, counts: np.ndarray) -> None:
        counts = np.asarray(counts, dtype=np.int64)
        ranks = np.asarray(ranks, dtype=np.int64)
        self.num_queries += len(counts)
        valid = counts > 0
        if not valid.any():
            return
        ends = np.cumsum(counts)
        starts = ends - counts
        row = np.repeat(np.arange(len(counts)), counts)
        k = np.arange(len(ranks)) - starts[row] + 1  # 1-based index of the match
        ap = np.bincount(row, weights=k / (ranks + 1.0), minlength=len(counts))[valid] / counts[valid]
        self.ap_sum += float(ap.sum())
        self.inp_sum += float((counts[valid] / (ranks[ends[valid] - 1] + 1.0)).sum())
        first = ranks[starts[valid]]
        self.first_hist += np.bincount(first[first < self.max_rank], minlength=self.max_rank)
        self.num_valid += int(valid.sum())

    def result(self) -> RankResult:
        skipped = self.num_queries - self.num_valid
        if self.num_valid == 0:
            raise PganError(f"none of the {self.num_queries} queries has a valid true match in the "
                            "gallery (check the identity labels and the same-camera removal)")
        if skipped:
            warnings.warn(f"{skipped} of {self.num_queries} queries have no valid true match in the "
                          "gallery and were skipped", NoMatchWarning, stacklevel=3)
        n = float(self.num_valid)
        return RankResult(cmc=np.cumsum(self.first_hist) / n, mAP=self.ap_sum / n,
                          mINP=self.inp_sum / n, num_valid_queries=self.num_valid,
                          num_queries=self.num_queries)


def _stable_order(row: np.ndarray) -> np.ndarray:
    """Indices sorting ``row`` ascending, ties by index (fast path when there are no ties)."""
    order = np.argsort(row)
    ordered = row[order]
    if np.any(ordered[1:] == ordered[:-1]):
        order = np.argsort(row, kind="stable")
    return order


def evaluate_rank(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                  max_rank: int = 50, remove_same_camera: bool = True) -> RankResult:
    """CMC, mAP and mINP from a ``(num_query, num_gallery)`` distance matrix.

    Pure function; accepts numpy arrays or torch tensors. Rows are ranked one at a
    time (memory O(num_gallery) beyond the matrix); ties by distance then gallery
    index. Raises :class:`PganError` on mismatched shapes or non-finite distances.
    """
    dist = to_numpy(distmat, "distmat")
    if dist.ndim != 2:
        raise PganError(f"distmat must be 2-D (query x gallery), got shape {dist.shape}")
    nq, ng = dist.shape
    check_sizes(nq, ng)
    q_pids, g_pids, q_camids, g_camids = check_labels(q_pids, g_pids, q_camids, g_camids, nq, ng)
    acc = RankAccumulator(max_rank)
    ranks, counts = [], np.zeros(nq, dtype=np.int64)
    for i in range(nq):
        row = dist[i]
        if not np.all(np.isfinite(row)):
            raise PganError(f"distmat row {i} contains NaN or infinite distances")
        order = _stable_order(row)
        match = g_pids[order] == q_pids[i]
        if remove_same_camera:
            keep = ~(match & (g_camids[order] == q_camids[i]))
            match = match[keep]
        pos = np.flatnonzero(match)
        counts[i] = len(pos)
        ranks.append(pos)
    acc.add(np.concatenate(ranks), counts)
    return acc.result()
