"""A faiss segment's index type and search parameters, chosen from its own rows.

* **Index type** (``index_type="auto"``, the default): each segment gets one by its row count when it is
  written, so a gallery that grows by adds moves from exact to approximate search on its own:

  - up to :data:`AUTO_EXACT_MAX` rows, ``Flat`` (exact: about 7 ms a query at 100,000 x 512 on one thread);
  - beyond, ``IVF<nlist>,PQ<d/4>x4fs,RFlat``: an inverted file over ``nlist`` ~ 4 sqrt(rows) k-means cells
    whose lists hold 4-bit product-quantisation codes scanned with SIMD ("fast scan"), then the best
    ``k_factor x k`` candidates re-scored exactly against the float32 vectors (the refine stage).
    Those float32 vectors are the segment's one copy of every vector (memory-mapped; exact filtered
    search and compaction read them too); the codes add d/4 + 8 bytes a row.

  Why not HNSW, the default before: at 1,000,000 x 512 on one thread (clustered vectors,
  ``docs/search_speed.json``), ``HNSW32,Flat`` answered in 2.79 ms median at recall@10 0.997 and took
  36 minutes to build; ``IVF4096,PQ128x4fs,RFlat`` measured 0.47 ms median, 0.70 ms p95 at recall@10 0.992
  with nprobe 64, built in 2.5 minutes, and stores 72 bytes a row beside the vectors instead of about 300.
  HNSW (and any faiss factory string) stays available through ``--index-type``. When no search setting
  reaches the recall target on a segment's vectors (uniform random vectors: recall@10 0.84 with every
  list probed at 200,000 rows), ``auto`` writes that segment as ``Flat`` instead, with a warning, and
  records what was missed in its ``params`` (``unreached``).
* **Search parameters**: segments of :data:`TUNE_MIN` rows or more get the least HNSW ``efSearch`` or
  IVF ``nprobe`` measured to reach a recall@10 target on :data:`TUNE_QUERIES` of their own rows, each
  query's own row left out of both the exact and the approximate answer (so a query finding itself
  does not flatter the measure). A fixed setting is not enough: an efSearch that gave recall 0.996 on
  one vector generator gave 0.973 on another.
"""

from __future__ import annotations

import math

import faiss
import numpy as np

__all__ = ["AUTO", "AUTO_EXACT_MAX", "K_FACTOR", "TUNE_MIN", "TUNE_QUERIES", "auto_index_type",
           "segment_index_type", "train_sample", "tune"]

AUTO = "auto"
AUTO_EXACT_MAX = 100_000
"""``auto``: exact search for segments up to this many rows, the IVF + fast-scan + refine index beyond."""
K_FACTOR = 8  # the refine stage re-scores the best k_factor x k candidates exactly (untuned segments)
K_FACTOR_CHOICES = (2, 4, 8, 16, 32, 64)
TUNE_MIN = 10_000  # approximate segments from this many rows get a search setting measured against a target
TUNE_QUERIES = 200  # the segment's own rows it is measured with
EF_CHOICES = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)
NPROBE_CHOICES = (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 2048, 4096, 8192)
TRAIN_PER_LIST = 50  # k-means training rows per IVF list (faiss wants at least 39)


def auto_index_type(rows: int, dim: int) -> str:
    """The factory string ``auto`` gives a segment of ``rows`` vectors of ``dim`` (see the module doc)."""
    if rows <= AUTO_EXACT_MAX:
        return "Flat"
    nlist = min(65536, max(256, 2 ** round(math.log2(4 * math.sqrt(rows)))))
    if dim % 4:
        return f"IVF{nlist},Flat"
    return f"IVF{nlist},PQ{dim // 4}x4fs,RFlat"


def segment_index_type(index_type: str, rows: int, dim: int) -> str:
    """The factory string a new segment of ``rows`` is built with under the index's ``index_type``."""
    return auto_index_type(rows, dim) if index_type == AUTO else index_type


def train_sample(n: int, index: faiss.Index, seed: int = 0) -> np.ndarray:
    """Sorted rows to train ``index`` on: all of them, or :data:`TRAIN_PER_LIST` per IVF list (k-means over
    every row of a million-row segment costs minutes and finds the same cells)."""
    try:
        want = TRAIN_PER_LIST * faiss.extract_index_ivf(index).nlist
    except RuntimeError:
        return np.arange(n)
    if n <= want:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, want, replace=False))


def _without(found: np.ndarray, own: np.ndarray, k: int) -> list[set]:
    return [set(row[row != q].tolist()[:k]) for row, q in zip(found, own)]


def tune(index: faiss.Index, vectors: np.ndarray, target: float, k: int = 10, seed: int = 0) -> dict:
    """The least ``efSearch`` (HNSW) or ``nprobe`` (IVF) whose recall@``k`` reaches ``target`` for
    :data:`TUNE_QUERIES` rows of ``vectors`` (the rows of ``index``, in order), each query's own row left
    out; ``{"efSearch" | "nprobe": value, "tuned_recall": measured}``, the largest choice when none reaches
    the target, and ``{}`` for an index with nothing to tune (exact). With a refine stage, ``nprobe`` is
    measured with the widest candidate list, then ``k_factor`` is the least that keeps the recall."""
    inner = faiss.downcast_index(index)
    hnsw = getattr(inner, "hnsw", None)
    try:
        ivf = faiss.extract_index_ivf(inner)
    except RuntimeError:
        ivf = None
    if hnsw is None and ivf is None:
        return {}
    rng = np.random.default_rng(seed)
    own = np.sort(rng.choice(len(vectors), min(TUNE_QUERIES, len(vectors)), replace=False))
    queries = np.ascontiguousarray(vectors[own], dtype=np.float32)
    scores = np.concatenate([np.asarray(vectors[j:j + 65536]) @ queries.T for j in range(0, len(vectors), 65536)])
    top = np.argpartition(-scores, k, axis=0)[:k + 1].T  # k + 1: the query's own row is among them
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores.T, top, axis=1), axis=1), axis=1)
    truth = _without(top, own, k)
    refine = hasattr(inner, "k_factor")  # IndexRefine: candidates re-scored exactly, k_factor x k of them

    def recall() -> float:
        _, got = index.search(queries, k + 1)
        return float(np.mean([len(t & f) / k for t, f in zip(truth, _without(got, own, k))]))

    if refine:  # first the cells, with a wide candidate list, so the codes' ranking does not hide them
        inner.k_factor = float(K_FACTOR_CHOICES[-1])
    name, choices = ("efSearch", EF_CHOICES) if hnsw is not None else ("nprobe", NPROBE_CHOICES)
    if ivf is not None:
        choices = tuple(c for c in choices if c < ivf.nlist) + (ivf.nlist,)
    for value in choices:
        if hnsw is not None:
            hnsw.efSearch = value
        else:
            ivf.nprobe = value
        found = recall()
        if found >= target:
            break
    out = {name: value, "tuned_recall": round(found, 4)}
    if refine:  # then the fewest candidates that keep the target (or the most, when it was missed)
        for kf in K_FACTOR_CHOICES:
            inner.k_factor = float(kf)
            if kf == K_FACTOR_CHOICES[-1] or recall() >= min(target, found):
                out.update(k_factor=kf, tuned_recall=round(recall(), 4))
                break
    return out
