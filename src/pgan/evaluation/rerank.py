"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), computed in blocks.

Same algorithm and defaults as the authors' ``re_ranking`` (k1=20, k2=6,
lambda=0.3) fed with Euclidean distances of L2-normalised features, i.e. the
"original distance" is ``||x - y||^2 = 2 - 2 cos``, each row divided by its
maximum. The classic code holds several (q+g) x (q+g) matrices; here the
neighbour lists and the k-reciprocal weights are sparse (O((q+g) * k1 * k2)),
the distances are computed block by block, and only two q x g float32 matrices
are held (the original query-gallery distances and the result).

Limits, honestly: time is O((q+g)^2 * d) (all pairwise distances are needed for
the neighbour lists: minutes on a CPU for VERI-Wild large); memory is about
``8 * q * g`` bytes for the two matrices, ``12 * (q+g) * d`` for the features,
the sparse weights, and some 0.4 GB of working blocks (:func:`estimate_bytes`).
:func:`rerank_features` raises :class:`PganError` instead of running when the
estimate exceeds ``max_gb``. Ties among neighbours are broken by index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pgan.errors import PganError
from pgan.evaluation.streaming import normalize_features

BLOCK_ELEMENTS = 1 << 23
# (query entry, gallery entry) pairs handled at a time in the Jaccard step
MAX_PAIRS = 1 << 22


def estimate_bytes(num_query: int, num_gallery: int, dim: int = 512, k1: int = 20, k2: int = 6) -> int:
    """Rough peak memory of :func:`rerank_features` in bytes."""
    n = num_query + num_gallery
    return (8 * num_query * num_gallery + 12 * n * dim + n * (k1 + 1) * (8 + 24 * k2)
            + 3 * 8 * BLOCK_ELEMENTS + 48 * MAX_PAIRS)


def _smallest_k(dist: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` smallest entries of each row, ordered by (distance, index)."""
    if k >= dist.shape[1]:
        return np.argsort(dist, axis=1, kind="stable")
    sel = np.argpartition(dist, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(dist, sel, 1)
    kth = vals.max(1, keepdims=True)
    ambiguous = np.flatnonzero(np.count_nonzero(dist == kth, axis=1) > np.count_nonzero(vals == kth, axis=1))
    for r in ambiguous:  # ties straddle the k-th place: take the lowest indices
        sel[r] = np.argsort(dist[r], kind="stable")[:k]
        vals[r] = dist[r, sel[r]]
    order = np.lexsort((sel, vals))
    return np.take_along_axis(sel, order, 1)


def _reciprocal(rank: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
    """Mask over ``rank[rows, :k+1]``: is ``rows[i]`` among its neighbour's k+1 nearest too?"""
    fwd = rank[rows, :k + 1]
    return (rank[fwd, :k + 1] == rows[:, None, None]).any(-1)


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
    """Sum duplicates and sort (row, col) pairs: returns (indptr, indices, data)."""
    keys, inv = np.unique(rows.astype(np.int64) * n + cols, return_inverse=True)
    data = np.bincount(inv.ravel(), weights=vals, minlength=len(keys))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // n, minlength=n))])
    return indptr, keys % n, data


def _segments(indptr: np.ndarray, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the CSR rows ``src`` concatenated, and each position's source slot."""
    lens = indptr[src + 1] - indptr[src]
    slot = np.repeat(np.arange(len(src)), lens)
    pos = np.arange(len(slot)) - np.repeat(np.cumsum(lens) - lens, lens) + indptr[src][slot]
    return pos, slot


def rerank_features(qf: Any, gf: Any, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                    max_gb: float = 4.0) -> np.ndarray:
    """Re-ranked ``(num_query, num_gallery)`` distance matrix (float32) for :func:`evaluate_rank`.

    Example::

        dist = rerank_features(qf, gf)
        result = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids)
    """
    q = normalize_features(qf, "query features")
    g = normalize_features(gf, "gallery features")
    nq, ng = len(q), len(g)
    if nq == 0 or ng == 0:
        raise PganError("re-ranking needs a non-empty query set and gallery")
    if q.shape[1] != g.shape[1]:
        raise PganError(f"query features have {q.shape[1]} dims but gallery features have {g.shape[1]}")
    if k1 < 1 or k2 < 1 or not 0.0 <= lambda_value <= 1.0:
        raise PganError(f"re-ranking needs k1 >= 1, k2 >= 1 and 0 <= lambda <= 1 (got {k1}, {k2}, "
                        f"{lambda_value})")
    need = estimate_bytes(nq, ng, q.shape[1], k1, k2)
    if need > max_gb * 2**30:
        raise PganError(f"re-ranking {nq} queries x {ng} gallery needs about {need / 2**30:.1f} GB, "
                        f"above max_gb={max_gb}; raise max_gb or evaluate without re-ranking")
    x = np.concatenate([q, g])
    n = len(x)
    kn = min(n, max(k1 + 1, k2))
    block = max(1, BLOCK_ELEMENTS // n)

    # Pass 1: distances block by block -> row maxima, neighbour lists, query-gallery distances.
    rank = np.empty((n, kn), dtype=np.int64)
    rowmax = np.empty(n, dtype=np.float32)
    dq = np.empty((nq, ng), dtype=np.float32)
    for s in range(0, n, block):
        dist = x[s:s + block] @ x.T
        dist *= -2.0
        dist += 2.0
        np.maximum(dist, 0.0, out=dist)  # squared Euclidean distance of unit vectors
        rowmax[s:s + len(dist)] = dist.max(1)
        rank[s:s + len(dist)] = _smallest_k(dist, kn)
        if s < nq:
            dq[s:min(nq, s + block)] = dist[:nq - s, nq:]
    rowmax = np.maximum(rowmax, np.float32(1e-12))

    # Pass 2: k-reciprocal sets, expanded by the half-size sets of their members.
    kh = min(int(np.around(k1 / 2.0)), kn - 1)
    k1 = min(k1, kn - 1)
    all_rows = np.arange(n)
    rows_per = 1 << 16
    half = np.concatenate([np.where(_reciprocal(rank, kh, all_rows[s:s + rows_per]),
                                    rank[s:s + rows_per, :kh + 1], -1) for s in range(0, n, rows_per)])
    half_size = np.count_nonzero(half >= 0, axis=1)
    pr, pc = [], []
    step = max(1, (1 << 22) // ((k1 + 1) ** 2 * (kh + 1)))
    for s in range(0, n, step):
        rows = all_rows[s:s + step]
        recip = np.where(_reciprocal(rank, k1, rows), rank[rows, :k1 + 1], -1)
        cand = half[np.maximum(recip, 0)]                      # (b, k1+1, kh+1)
        inter = ((cand[..., None] == recip[:, None, None, :]) & (cand[..., None] >= 0)).any(-1).sum(-1)
        accept = (recip >= 0) & (inter > 2.0 / 3.0 * half_size[np.maximum(recip, 0)])
        members = np.concatenate([recip, np.where(accept[..., None], cand, -1).reshape(len(rows), -1)], 1)
        r_idx, m_idx = np.nonzero(members >= 0)
        pr.append(rows[r_idx])
        pc.append(members[r_idx, m_idx])
    pr, pc = np.concatenate(pr), np.concatenate(pc)
    keys = np.unique(pr * n + pc)
    pr, pc = keys // n, keys % n
    w = np.empty(len(pr), dtype=np.float64)
    step = max(1, (1 << 22) // x.shape[1])  # pairs per block: two gathered (step, d) float32 arrays
    for s in range(0, len(pr), step):
        a, b = pr[s:s + step], pc[s:s + step]
        d = np.maximum(2.0 - 2.0 * np.einsum("ij,ij->i", x[a], x[b]), 0.0) / rowmax[a]
        w[s:s + len(a)] = np.exp(-d)
    w /= np.bincount(pr, weights=w, minlength=n)[pr]
    indptr, indices, data = _csr(pr, pc, w, n)

    # Pass 3: local query expansion, V[i] = mean of V over i's k2 nearest.
    if k2 > 1:
        qe_r, qe_c, qe_v = [], [], []
        for s in range(0, n, 4096):
            src = rank[s:s + 4096, :k2].ravel()
            pos, slot = _segments(indptr, src)
            qe_r.append(s + slot // k2)
            qe_c.append(indices[pos])
            qe_v.append(data[pos] / k2)
        indptr, indices, data = _csr(np.concatenate(qe_r), np.concatenate(qe_c), np.concatenate(qe_v), n)

    # Pass 4: Jaccard distance of each query to each gallery item, via the gallery's columns.
    row_of = np.repeat(all_rows, np.diff(indptr))
    gal = np.flatnonzero(row_of >= nq)
    gal = gal[np.argsort(indices[gal], kind="stable")]
    col_ptr = np.concatenate([[0], np.cumsum(np.bincount(indices[gal], minlength=n))])
    out = np.empty((nq, ng), dtype=np.float32)
    col_len = np.diff(col_ptr)
    pairs = np.cumsum(np.bincount(row_of[:indptr[nq]], weights=col_len[indices[:indptr[nq]]], minlength=nq))
    s = 0
    while s < nq:  # query blocks bounded by the dense block size and by the number of (entry, item) pairs
        e = int(np.searchsorted(pairs, (pairs[s - 1] if s else 0) + MAX_PAIRS, side="right"))
        e = min(nq, s + max(1, BLOCK_ELEMENTS // (4 * ng)), max(e, s + 1))
        ent = np.arange(indptr[s], indptr[e])
        pos, slot = _segments(col_ptr, indices[ent])
        gpos = gal[pos]
        mins = np.minimum(data[ent][slot], data[gpos])
        flat = (row_of[ent][slot] - s) * ng + (row_of[gpos] - nq)
        tmin = np.bincount(flat, weights=mins, minlength=(e - s) * ng).reshape(e - s, ng)
        jac = 1.0 - tmin / (2.0 - tmin)
        out[s:e] = jac * (1.0 - lambda_value) + dq[s:e] / rowmax[s:e, None] * lambda_value
        s = e
    return out
