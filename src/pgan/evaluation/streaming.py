"""Exact CMC / mAP / mINP from features, streaming over query chunks.

The query x gallery matrix is never held: queries are processed ``chunk_size``
rows at a time, with one float32 matmul per chunk for the cosine similarities of
L2-normalised features. Only the ranks of each query's true matches are computed,
never a full sort of the row:

1. The gallery is grouped by identity once, so each query's true matches (and the
   same-identity same-camera entries to remove) are known without a scan.
2. Ranking order is "higher similarity first, then lower gallery index" (the
   order of a stable sort by distance). Each (similarity, index) pair is coded as
   one int64 whose integer order *is* the ranking order, so ties are exact.
3. The rank of a true match = the number of gallery items ahead of it, minus the
   removed items ahead of it (they are few: same identity and same camera).
   Items ahead are counted in whichever of three ways is cheapest for that match,
   judged from a 1-in-64 column sample of the row:

   * most matches: only items at least as similar as the row's hardest such match
     can be ahead, so the chunk keeps just those (one vectorised comparison per
     element), sorts their codes and locates the matches with ``searchsorted``;
   * a "deep" match (over 1/64 of the gallery ahead, typical of a poor query):
     one counting pass over its row, instead of gathering thousands of items;
   * a row with many deep matches (a poor model): the row is sorted once.

Each chunk's rows are ranked by a small thread pool (numpy releases the GIL).
Cost: the matmul plus O(chunk * g) cheap passes; on 2 CPU cores about 1.3-1.5x a
bare ``q @ g.T`` (``benchmarks/eval_speed.py``), memory O((q + g) * d + chunk * g).

Ranks are exactly those of :func:`pgan.evaluation.evaluate_rank` on the distance
matrix ``-sim`` (the same float32 similarities); metrics agree to float rounding.
With ``1 - sim`` as the distance they agree too, except where float32 rounding of
``1 - sim`` merges two distinct similarities into a tie.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np

from pgan.errors import PganError
from pgan.evaluation.metrics import RankAccumulator, RankResult, check_labels, check_sizes, to_numpy

# Default chunk: about this many similarities (float32, so 4x the bytes) per query chunk.
CHUNK_ELEMENTS = 1 << 26
# A true match is "deep" when about this fraction of the gallery is ahead of it: counting it
# with a pass over its row is cheaper than gathering everything ahead of it.
DEEP_FRACTION = 1 / 64
# Rows with more deep matches than this are sorted once instead of passed over per match.
SORT_AT = 6
# Galleries smaller than this are not sampled (everything is cheap).
SAMPLE_MIN_GALLERY = 4096
SAMPLE_STRIDE = 64
METHODS = ("auto", "sparse", "count", "dense")
# Rows compared at a time against their thresholds (a small, reused boolean buffer).
MASK_ROWS = 64


def normalize_features(x: Any, name: str, block: int = 8192, pool: Executor | None = None) -> np.ndarray:
    """A float32 copy of ``x`` (n, d) with unit-length rows; rejects NaN / inf.

    All-zero rows stay zero (similarity 0 to everything). Blocks of rows are
    normalised in ``pool`` when one is given.
    """
    a = to_numpy(x, name)
    if a.ndim != 2:
        raise PganError(f"{name} must be 2-D (items x dims), got shape {a.shape}")
    if a.dtype.kind not in "fiu":
        raise PganError(f"{name} must be numeric, got dtype {a.dtype}")
    out = np.empty(a.shape, dtype=np.float32)

    def one(s: int) -> None:
        blk = np.asarray(a[s:s + block], dtype=np.float32)
        sq = np.einsum("ij,ij->i", blk, blk, dtype=np.float64)
        if not np.all(np.isfinite(sq)):  # NaN / inf in the block (float32 squares cannot overflow here)
            bad = s + int(np.flatnonzero(~np.all(np.isfinite(blk), axis=1))[0])
            raise PganError(f"{name} contain NaN or infinite values (first at row {bad}; "
                            "values beyond float32's range count as infinite)")
        norm = np.sqrt(sq).astype(np.float32)
        np.divide(blk, np.maximum(norm, np.float32(1e-12))[:, None], out=out[s:s + block])

    starts = range(0, len(a), block)
    list(pool.map(one, starts) if pool is not None else map(one, starts))
    return out


def _desc_codes(vals: np.ndarray) -> np.ndarray:
    """uint32 codes (as int64) whose ascending order is *descending* float32 order.

    ``-0.0`` must already be folded into ``+0.0`` (add 0.0) so the two tie.
    """
    bits = vals.view(np.int32)
    flip = ~(bits >> 31) & np.int32(0x7FFFFFFF)
    return (bits ^ flip).view(np.uint32).astype(np.int64)


class _GalleryIndex:
    """The gallery grouped by identity, its cameras, and the layout of the int64 ranking keys."""

    def __init__(self, num: int, g_codes: np.ndarray, g_camids: np.ndarray, num_codes: int):
        self.g_camids = g_camids
        self.num = num
        self.order = np.argsort(g_codes, kind="stable")
        self.count = np.bincount(g_codes, minlength=num_codes)
        self.start = np.cumsum(self.count) - self.count
        # key = row << row_shift | desc_code << col_bits | gallery index
        self.col_bits = self._col_bits(num)
        self.row_shift = 32 + self.col_bits

    @staticmethod
    def _col_bits(num: int) -> int:
        bits = max(1, int(num - 1).bit_length())
        if bits > 30:
            raise PganError(f"gallery of {num} items is too large for the streaming evaluator")
        return bits

    @classmethod
    def max_rows_for(cls, num: int) -> int:
        """Most query rows per chunk for which the int64 keys cannot overflow."""
        return 1 << (63 - 32 - cls._col_bits(num))

    def keys(self, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
        return (rows.astype(np.int64) << self.row_shift) | (_desc_codes(vals) << self.col_bits) | cols


def _rank_chunk(sim: np.ndarray, sample: np.ndarray | None, mask: np.ndarray, gal: _GalleryIndex,
                q_codes: np.ndarray, q_cams: np.ndarray, remove_same_camera: bool,
                method: str) -> tuple[np.ndarray, np.ndarray]:
    """Sorted 0-based ranks of each query's valid true matches, and their counts.

    ``sample``: similarities to the gallery sample (or None); ``mask``: a scratch
    boolean array of ``(any rows, g)``.
    """
    c, g = sim.shape
    n_pos = gal.count[q_codes]
    total = int(n_pos.sum())
    prow = np.repeat(np.arange(c), n_pos)
    offset = np.repeat(gal.start[q_codes] - (np.cumsum(n_pos) - n_pos), n_pos)
    pidx = gal.order[np.arange(total) + offset]
    psim = sim[prow, pidx] + np.float32(0.0)
    if remove_same_camera:
        removed = gal.g_camids[pidx] == q_cams[prow]
    else:
        removed = np.zeros(total, dtype=bool)
    valid = ~removed
    counts = np.bincount(prow[valid], minlength=c)
    pkeys = gal.keys(prow, pidx, psim)
    sel = np.flatnonzero(valid)
    sel = sel[np.argsort(pkeys[sel])]  # valid matches in ranking order, grouped by row
    vkeys, vrows, vsim, vidx = pkeys[sel], prow[sel], psim[sel], pidx[sel]
    if len(sel) == 0:
        return np.zeros(0, dtype=np.int64), counts
    # Items ahead of each match, removed ones included ...
    if method == "dense":
        ahead = _ahead_sorted_rows(sim, vsim, vidx, vrows)
    else:
        if method == "auto":
            deep = _deep_matches(sample, g, vsim, vrows)
        else:
            deep = np.full(len(sel), method == "count")
        ahead = np.empty(len(sel), dtype=np.int64)
        if not deep.all():
            thr = np.full(c, np.inf, dtype=np.float32)
            np.minimum.at(thr, vrows[~deep], vsim[~deep])
            ahead[~deep] = _ahead_sparse(sim, mask, thr, gal, vkeys[~deep], vrows[~deep])
        if deep.any():
            ahead[deep] = _ahead_counted(sim, vsim[deep], vidx[deep], vrows[deep])
    # ... minus the removed items ahead of it.
    rkeys = np.sort(pkeys[removed])
    if len(rkeys):
        row_first = vrows.astype(np.int64) << gal.row_shift  # smallest key of the row
        ahead -= np.searchsorted(rkeys, vkeys) - np.searchsorted(rkeys, row_first)
    return ahead, counts


def _deep_matches(sample: np.ndarray | None, g: int, vsim: np.ndarray, vrows: np.ndarray) -> np.ndarray:
    """Which matches have more than ``DEEP_FRACTION`` of the gallery ahead, estimated from
    ``sample``: the rows' similarities to every ``SAMPLE_STRIDE``-th gallery item."""
    if sample is None:
        return np.zeros(len(vsim), dtype=bool)
    c, n = sample.shape
    sample = np.sort(sample, axis=1)
    # rows side by side in one sorted float64 array (an estimate: rounding does not matter)
    flat = (sample + 4.0 * np.arange(c)[:, None]).ravel()
    below = np.searchsorted(flat, vsim + 4.0 * vrows, side="right") - vrows * n
    return (n - below) * (g / n) > DEEP_FRACTION * g


def _ahead_sparse(sim: np.ndarray, mask: np.ndarray, thr: np.ndarray, gal: _GalleryIndex,
                  vkeys: np.ndarray, vrows: np.ndarray) -> np.ndarray:
    """Count items ahead of each match among the candidates: the items of its row at least as
    similar as ``thr`` of that row (the row's hardest match handled here)."""
    c, g = sim.shape
    step = len(mask)
    flat = np.concatenate([np.flatnonzero(np.greater_equal(sim[a:a + step], thr[a:a + step, None],
                                                           out=mask[:min(step, c - a)])) + a * g
                           for a in range(0, c, step)])
    row_start = np.searchsorted(flat, np.arange(c + 1, dtype=np.int64) * g)
    vals = sim.ravel()[flat]
    vals += np.float32(0.0)  # fold -0.0 into +0.0
    codes = _desc_codes(vals)
    # row << row_shift | code << col_bits | col, with col = flat - row * g
    codes <<= gal.col_bits
    codes += flat
    codes += np.repeat(np.arange(c, dtype=np.int64) * ((1 << gal.row_shift) - g), np.diff(row_start))
    codes.sort()
    return np.searchsorted(codes, vkeys) - row_start[vrows]


def _ahead_counted(sim: np.ndarray, vsim: np.ndarray, vidx: np.ndarray, vrows: np.ndarray) -> np.ndarray:
    """Count items ahead of each match with one pass over its row (rows with many: one sort).

    Ahead of gallery item ``i`` with similarity ``t``: items before ``i`` with
    similarity >= t and items after it with similarity > t (exact on ties).
    """
    ahead = np.empty(len(vsim), dtype=np.int64)
    rows, first, n = np.unique(vrows, return_index=True, return_counts=True)
    many = n > SORT_AT
    for r, s, k in zip(rows[~many], first[~many], n[~many]):
        row = sim[r]
        for j in range(s, s + k):
            i, t = vidx[j], vsim[j]
            ahead[j] = np.count_nonzero(row[:i] >= t) + np.count_nonzero(row[i + 1:] > t)
    if many.any():
        pick = np.repeat(many, n)
        ahead[pick] = _ahead_sorted_rows(sim, vsim[pick], vidx[pick], vrows[pick])
    return ahead


def _ahead_sorted_rows(sim: np.ndarray, vsim: np.ndarray, vidx: np.ndarray,
                       vrows: np.ndarray) -> np.ndarray:
    """Count items ahead of each match by sorting its row (for rows with many deep matches)."""
    g = sim.shape[1]
    rows, first, n = np.unique(vrows, return_index=True, return_counts=True)
    ahead = np.empty(len(vsim), dtype=np.int64)
    for i0 in range(0, len(rows), 64):
        srt = np.sort(sim[rows[i0:i0 + 64]], axis=1)
        for row_sorted, r, s, k in zip(srt, rows[i0:i0 + 64], first[i0:i0 + 64], n[i0:i0 + 64]):
            t = vsim[s:s + k]
            right = np.searchsorted(row_sorted, t, side="right")
            ahead[s:s + k] = g - right
            for j in np.flatnonzero(right - np.searchsorted(row_sorted, t, side="left") > 1):
                ahead[s + j] += np.count_nonzero(sim[r, :vidx[s + j]] == t[j])
    return ahead


def evaluate_features(qf: Any, gf: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                      max_rank: int = 50, remove_same_camera: bool = True,
                      chunk_size: int | None = None, method: str = "auto",
                      num_threads: int | None = None) -> RankResult:
    """CMC, mAP and mINP for cosine distance between features, without the full matrix.

    Features (numpy arrays or torch tensors, ``(n, d)``) are L2-normalised here.
    ``chunk_size`` queries are ranked at a time (default: about 64M similarities
    per chunk, i.e. 256 MB); memory is O((q + g) * d + chunk_size * g).
    ``num_threads`` threads rank each chunk's rows (default: the usable CPUs, at most 8);
    the result does not depend on it.
    ``method`` picks how items ahead of a match are counted: ``"auto"`` (default; per
    match, the cheapest of the three), ``"sparse"``, ``"count"`` or ``"dense"`` (for tests).
    Same ranks as :func:`evaluate_rank` on ``-(q @ g.T)`` (cosine distance up to a
    constant), ties broken by gallery index.

    Example::

        result = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids)
        print(result.to_dict())   # {'mAP': ..., 'mINP': ..., 'rank1': ..., ...}
    """
    if method not in METHODS:
        raise PganError(f"unknown ranking method {method!r}; valid: {', '.join(METHODS)}")
    if chunk_size is not None and chunk_size < 1:
        raise PganError(f"chunk_size must be positive, got {chunk_size}")
    threads = max(1, int(num_threads or default_threads()))
    with ThreadPoolExecutor(threads) as pool:
        q = normalize_features(qf, "query features", pool=pool)
        g = normalize_features(gf, "gallery features", pool=pool)
        check_sizes(len(q), len(g))
        if q.shape[1] != g.shape[1]:
            raise PganError(f"query features have {q.shape[1]} dims but gallery features have {g.shape[1]}")
        q_pids, g_pids, q_camids, g_camids = check_labels(q_pids, g_pids, q_camids, g_camids,
                                                          len(q), len(g))
        uniq, inv = np.unique(np.concatenate([g_pids, q_pids]), return_inverse=True)
        gal = _GalleryIndex(len(g), inv[:len(g)], g_camids, len(uniq))
        chunk = chunk_rows(len(q), len(g), chunk_size)
        acc = RankAccumulator(max_rank)
        _stream(q, g, inv[len(g):], q_camids, gal, acc, chunk, pool, min(threads, chunk),
                remove_same_camera, method)
    return acc.result()


def _stream(q: np.ndarray, g: np.ndarray, q_codes: np.ndarray, q_camids: np.ndarray, gal: _GalleryIndex,
            acc: RankAccumulator, chunk: int, pool: Executor, parts: int, remove_same_camera: bool,
            method: str) -> None:
    """The chunk loop: one matmul per query chunk, its rows ranked in ``parts`` pool jobs."""
    gt = g.T
    # every SAMPLE_STRIDE-th gallery item, to estimate how deep each match is
    g_sample = np.ascontiguousarray(g[::SAMPLE_STRIDE]).T if len(g) >= SAMPLE_MIN_GALLERY else None
    sim_buf = np.empty((chunk, len(g)), dtype=np.float32)   # one buffer: fresh pages are costly
    masks = [np.empty((min(MASK_ROWS, chunk), len(g)), dtype=bool) for _ in range(parts)]
    for s in range(0, len(q), chunk):
        e = min(len(q), s + chunk)
        sim = np.matmul(q[s:e], gt, out=sim_buf[:e - s])
        sample = None if g_sample is None or method != "auto" else q[s:e] @ g_sample
        # rows split between threads (numpy releases the GIL); results added in row order
        cuts = np.linspace(0, e - s, parts + 1).astype(int)
        jobs = [pool.submit(_rank_chunk, sim[a:b], None if sample is None else sample[a:b], mask, gal,
                            q_codes[s + a:s + b], q_camids[s + a:s + b], remove_same_camera, method)
                for a, b, mask in zip(cuts[:-1], cuts[1:], masks) if b > a]
        for job in jobs:
            acc.add(*job.result())


def chunk_rows(num_query: int, num_gallery: int, chunk_size: int | None = None) -> int:
    """Queries per chunk: ``chunk_size`` (default: ``CHUNK_ELEMENTS // num_gallery``), capped
    by the key layout, then evened out over the same number of chunks."""
    chunk = int(chunk_size or max(1, CHUNK_ELEMENTS // num_gallery))
    chunk = min(chunk, _GalleryIndex.max_rows_for(num_gallery), num_query)
    return -(-num_query // -(-num_query // chunk))


def default_threads() -> int:
    """Threads for the per-chunk ranking: the CPUs this process may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))
