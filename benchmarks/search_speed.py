"""Gallery search speed and recall: brute force (numpy, torch), faiss exact, HNSW and IVF-PQ.

Vectors: a clustered, re-ID-like gallery of ``n`` L2-normalised ``dim``-d
vectors (default 200,000 x 512; the goal is stated for 1,000,000). The generator
mimics what a trained re-ID model gives: ``n / views`` identities, grouped into
families of ``family_size`` near-twins (same model and colour), each identity
seen ``views`` times:

* a family centre ``c_f`` ~ N(0, I), normalised;
* an identity centre ``c_i = normalise(c_f + s_id * z_i)``, ``z_i`` ~ N(0, I / dim),
  so identities of one family are close (cosine ~ 1 / (1 + s_id^2));
* a view ``x = normalise(c_i + s_view * u * z)`` with a per-view strength ``u`` in
  [0.5, 1.5] (viewpoint, light, occlusion vary per image).

Queries are drawn exactly like gallery items: new views of gallery identities
(their other views are the true matches, their near-twins the confusers), so
the recall figures describe the hard part of a re-ID search. Defaults
(``s_id`` 0.6, ``s_view`` 0.5) make the nearest family members about as close
as a same-identity view under a strong viewpoint change.

Measured per method, on one thread (faiss, torch and BLAS), under ``nice``:
``median_ms_single`` (one query at a time, median over ``--queries``),
``batch_qps`` (queries per second in batches of 256), ``recall_at_10`` (share of
the exact top-10 found, exact = faiss ``Flat``), ``build_s`` and ``memory_mb``
(the index's serialised size; numpy/torch: the matrix). HNSW is measured at
several ``efSearch`` values (one row each); the goal (<= 1 ms at recall@10 >=
0.99) is checked on the best row that meets the recall.

Usage: ``nice -n 10 python benchmarks/search_speed.py [--n 200000] [--dim 512] [--out docs/search_speed.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from pgan.index.store import new_faiss_index  # noqa: E402
from pgan.utils.atomic import atomic_write_json  # noqa: E402


def clustered_vectors(n: int, dim: int, views: int = 8, family_size: int = 6, s_id: float = 0.6,
                      s_view: float = 0.5, queries: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(gallery (n, dim), queries (queries, dim))`` float32, unit rows (see the module docstring)."""
    rng = np.random.default_rng(seed)
    n_ids = max(1, n // views)
    n_fam = max(1, n_ids // family_size)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    fam = unit(rng.standard_normal((n_fam, dim), dtype=np.float32))
    ids = unit(fam[np.arange(n_ids) % n_fam] + s_id * rng.standard_normal((n_ids, dim), dtype=np.float32)
               / np.sqrt(dim))

    def views_of(owner: np.ndarray) -> np.ndarray:
        out = np.empty((len(owner), dim), np.float32)
        for s in range(0, len(owner), 50_000):
            o = owner[s:s + 50_000]
            u = rng.uniform(0.5, 1.5, (len(o), 1)).astype(np.float32)
            noise = rng.standard_normal((len(o), dim), dtype=np.float32) / np.sqrt(dim)
            out[s:s + 50_000] = unit(ids[o] + s_view * u * noise)
        return out

    gallery = views_of(np.arange(n) % n_ids)
    q = views_of(rng.integers(0, n_ids, queries))
    return gallery, q


def _median_single(search, queries: np.ndarray) -> float:
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q[None])
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def _qps(search, queries: np.ndarray, batch: int = 256) -> float:
    t = time.perf_counter()
    for i in range(0, len(queries), batch):
        search(queries[i:i + batch])
    return len(queries) / (time.perf_counter() - t)


def _recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def run(n: int, dim: int, num_queries: int, k: int, seed: int, hnsw_ef: list[int], ivf: str, nprobe: int,
        skip_hnsw: bool = False) -> list[dict]:
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    t = time.perf_counter()
    g, q = clustered_vectors(n, dim, queries=num_queries, seed=seed)
    print(f"generated {n} x {dim} gallery + {num_queries} queries in {time.perf_counter() - t:.1f} s", flush=True)
    single_q = q[: min(200, num_queries)]
    rows = []

    def add(method: str, search, build_s: float, memory_mb: float, exact_ids: np.ndarray | None, **extra):
        ids = search(q)
        rec = 1.0 if exact_ids is None else _recall(ids, exact_ids)
        single = _median_single(search, single_q)
        row = {"method": method, "n": n, "dim": dim, "median_ms_single": round(single, 3),
               "batch_qps": round(_qps(search, q), 1), "recall_at_10": round(rec, 4), "build_s": round(build_s, 2),
               "memory_mb": round(memory_mb, 1), **extra}
        rows.append(row)
        print(json.dumps(row), flush=True)
        return ids

    def np_search(x):
        s = x @ g.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.take_along_axis(s, part, 1).argsort(axis=1)[:, ::-1]
        return np.take_along_axis(part, order, 1)

    gt = torch.from_numpy(g)

    def torch_search(x):
        return torch.topk(torch.from_numpy(x) @ gt.T, k, dim=1).indices.numpy()

    def faiss_search(index):
        return lambda x: index.search(x, k)[1]

    t = time.perf_counter()
    flat = new_faiss_index(dim, "Flat", {"efConstruction": 40})
    flat.add_with_ids(g, np.arange(n, dtype=np.int64))
    flat_build = time.perf_counter() - t
    exact = add("faiss Flat (exact)", faiss_search(flat), flat_build, len(faiss.serialize_index(flat)) / 2**20,
                None)
    add("numpy brute force", np_search, 0.0, g.nbytes / 2**20, exact)
    add("torch brute force", torch_search, 0.0, g.nbytes / 2**20, exact)
    del flat

    if not skip_hnsw:
        t = time.perf_counter()
        hnsw = new_faiss_index(dim, "HNSW32,Flat", {"efConstruction": 80})
        hnsw.add_with_ids(g, np.arange(n, dtype=np.int64))
        build = time.perf_counter() - t
        mem = len(faiss.serialize_index(hnsw)) / 2**20
        inner = faiss.downcast_index(hnsw.index)
        for ef in hnsw_ef:
            inner.hnsw.efSearch = ef
            add(f"faiss HNSW32,Flat efSearch={ef}", faiss_search(hnsw), build, mem, exact, efSearch=ef)
        del hnsw

    t = time.perf_counter()
    pq = new_faiss_index(dim, ivf, {"efConstruction": 40})
    # PQ training is the slow part of the build (k-means per sub-quantiser); 25,000 vectors are plenty
    # for 256 centroids per sub-space and IVF512 lists (about 50 points per list).
    train = g[np.random.default_rng(seed).choice(n, min(n, 25_000), replace=False)]
    pq.train(train)
    pq.add_with_ids(g, np.arange(n, dtype=np.int64))
    build = time.perf_counter() - t
    faiss.extract_index_ivf(faiss.downcast_index(pq.index)).nprobe = nprobe
    mem = len(faiss.serialize_index(pq)) / 2**20
    add(f"faiss {ivf} nprobe={nprobe} (compressed)", faiss_search(pq), build, mem, exact, nprobe=nprobe)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hnsw-ef", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--ivf", default="IVF512,PQ64")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--out", default="docs/search_speed.json")
    args = ap.parse_args()
    rows = run(args.n, args.dim, args.queries, args.k, args.seed, args.hnsw_ef, args.ivf, args.nprobe,
               args.skip_hnsw)
    exact = next(r for r in rows if r["method"].startswith("faiss Flat"))
    ok = [r for r in rows if "HNSW" in r["method"] and r["recall_at_10"] >= 0.99]
    best = min(ok, key=lambda r: r["median_ms_single"]) if ok else None
    summary = {"goal": "median single query <= 1 ms at recall@10 >= 0.99 of exact, n = 1,000,000",
               "measured_n": args.n, "threads": 1, "machine": platform.processor() or platform.machine(),
               "best_hnsw": best and best["method"],
               "speedup_vs_exact": best and round(exact["median_ms_single"] / best["median_ms_single"], 1),
               "goal_met_at_measured_n": bool(best and best["median_ms_single"] <= 1.0)}
    print(json.dumps(summary))
    atomic_write_json(args.out, {"rows": rows, "summary": summary})


if __name__ == "__main__":
    main()
