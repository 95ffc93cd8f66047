"""Gallery search speed and recall through the product path (``GalleryIndex.search``), beside raw faiss.

Vectors: a synthetic gallery of ``n`` L2-normalised ``dim``-d vectors (``--sizes``, default 200,000
and 1,000,000 x 512; the goal is stated for 1,000,000), ``clustered`` (default) or ``random``
(uniform on the sphere). The clustered generator mimics what a trained re-ID model gives:
``n / views`` identities, grouped into families of ``family_size`` near-twins (same model and
colour), each identity seen ``views`` times:

* a family centre ``c_f`` ~ N(0, I), normalised;
* an identity centre ``c_i = normalise(c_f + s_id * z_i)``, ``z_i`` ~ N(0, I / dim),
  so identities of one family are close (cosine ~ 1 / (1 + s_id^2));
* a view ``x = normalise(c_i + s_view * u * z)`` with a per-view strength ``u`` in
  [0.5, 1.5] (viewpoint, light, occlusion vary per image).

Queries are drawn exactly like gallery items: new views of gallery identities (their other views are
the true matches, their near-twins the confusers), so recall describes the hard part of a re-ID search.

Each index is a real ``GalleryIndex`` folder (faiss + SQLite rows with fake metadata: path, camera,
vehicle id, timestamp), made the way ``pgan index build`` makes one, minus the model:
``GalleryIndex.create`` -> ``add_batch`` -> ``finalize``. Per index type (``Flat``, ``HNSW32,Flat``
at each ``--hnsw-ef``, ``--ivf`` at ``--nprobe``) the time phase reports, over ``--queries`` single
queries (``--brute-queries`` for the linear-time exact methods): median, mean, p95 and p99 ms of

* ``raw``: ``search`` on the very faiss index the product searches (its one segment), and
* ``product``: ``GalleryIndex.search(q, k)``, which adds the generation check and the SQLite lookup of
  the hits' metadata; ``product_same_ids`` is the share of queries whose product hits are the raw ids;

plus ``recall_at_10`` (share of the exact top-k found; exact = faiss ``IndexFlatIP`` over the same
vectors, batch search), ``batch_qps`` (raw, batches of 256), build seconds and file sizes. numpy and
torch brute force are raw rows. Milvus Lite's HNSW (pymilvus ``MilvusClient`` on a local folder URI,
``M`` and ``efConstruction`` as faiss's) is a row at ``--milvus-sizes`` (default 200,000), timed bare
(ids only) and with the same metadata fields as the product returns; skipped, with the reason printed,
when pymilvus or milvus-lite is missing. Every thread pool (OpenMP, BLAS) is limited to one thread
with threadpoolctl; torch and faiss are told too.

Phases: ``--phase build`` writes the vectors, the exact top-k and every index under ``--out``
(default ``runs/search_speed``), each one atomically (built in a ``.partial`` folder, renamed when
complete), skipping what is there already; ``--phase time`` loads them and times the queries
(run it alone on a quiet machine); ``both`` (default) does one then the other. The time phase writes
``--json`` (default ``docs/search_speed.json``) and prints a markdown table.

``--phase scale`` runs ``benchmarks/search_scale.py`` with the other arguments (bytes per item, adds to
a large gallery, filtered search, a Milvus standalone server; ``scale_rows`` in the same JSON).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/search_speed.py --phase build --out runs/search_speed
    OMP_NUM_THREADS=1 python benchmarks/search_speed.py --phase time --out runs/search_speed
    OMP_NUM_THREADS=1 python benchmarks/search_speed.py --phase scale --n 1000000
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from pgan.index.segments import apply_search_params  # noqa: E402
from pgan.index.store import GalleryIndex, GalleryItem  # noqa: E402
from pgan.index.vectors import DEFAULT_PARAMS, SEGMENTS_DIR  # noqa: E402
from pgan.utils.atomic import atomic_open, atomic_write_json  # noqa: E402

GOAL = {"n": 1_000_000, "median_ms": 1.0, "p95_ms": 2.0, "recall_at_10": 0.99}
BUILD_RECORD = "bench_build.json"  # inside each finished index folder: how long it took
META_FIELDS = ["path", "camera", "vehicle_id", "timestamp"]


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


def random_vectors(n: int, dim: int, queries: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Uniform on the unit sphere: no structure for a graph or a quantiser to exploit."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + queries, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


# --- the build phase --------------------------------------------------------------------------------
def _folder_name(index_type: str) -> str:
    return index_type.replace(",", "_")


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, array)


def build_data(folder: Path, vectors: str, n: int, dim: int, queries: int, k: int, seed: int) -> None:
    """``data/gallery.npy``, ``queries.npy`` and ``exact_ids.npy`` (the exact top-k, faiss IndexFlatIP)."""
    data = folder / "data"
    if (data / "exact_ids.npy").is_file():
        return
    t = time.perf_counter()
    make = clustered_vectors if vectors == "clustered" else random_vectors
    g, q = make(n, dim, queries=queries, seed=seed)
    flat = faiss.IndexFlatIP(dim)
    flat.add(g)
    exact = flat.search(q, k)[1].astype(np.int64)
    _save_npy(data / "gallery.npy", g)
    _save_npy(data / "queries.npy", q)
    _save_npy(data / "exact_ids.npy", exact)  # last: its presence says the data is complete
    print(f"{folder.name}: vectors, queries and exact top-{k} in {time.perf_counter() - t:.1f} s", flush=True)


def fake_items(start: int, stop: int, views: int = 8, cameras: int = 20) -> list[GalleryItem]:
    """Metadata of the kind a real gallery has (a path, a camera, a vehicle id, a timestamp)."""
    return [GalleryItem(f"/synthetic/{i // views:07d}/{i:08d}.jpg", camera=i % cameras, vehicle_id=i // views,
                        timestamp=f"2026-01-01T{(i // 3600) % 24:02d}:{(i // 60) % 60:02d}:{i % 60:02d}")
            for i in range(start, stop)]


def build_gallery_index(out: Path, vectors: np.ndarray, index_type: str, params: dict,
                        batch: int = 20_000) -> dict:
    """A ``GalleryIndex`` folder of ``vectors`` (ids 0..n-1) with fake metadata, built in ``out.partial``
    and renamed to ``out`` when complete; returns the build record (seconds per stage)."""
    tmp = out.with_name(out.name + ".partial")
    for stale in (tmp, out):  # an interrupted build: its faiss part cannot resume midway
        if stale.exists():
            shutil.rmtree(stale)
    t0 = time.perf_counter()
    idx = GalleryIndex.create(tmp, vectors.shape[1], "synthetic", "synthetic", index_type, params,
                              source=f"benchmarks/search_speed.py {out.parent.name}")
    for s in range(0, len(vectors), batch):
        ids = idx.add_batch(fake_items(s, min(s + batch, len(vectors))), vectors[s:s + batch])
        assert ids[0] == s, "a fresh index numbers its rows from 0"
    t1 = time.perf_counter()
    idx.finalize()
    idx.close()
    record = {"index_type": index_type, "params": params, "n": len(vectors), "rows_s": round(t1 - t0, 1),
              "faiss_build_s": round(time.perf_counter() - t1, 1)}
    atomic_write_json(tmp / BUILD_RECORD, record)
    tmp.rename(out)
    return record


def build_milvus(out: Path, vectors: np.ndarray, m: int, ef_construction: int, batch: int = 10_000) -> dict:
    """A Milvus Lite collection ``gallery`` of ``vectors`` with HNSW (IP), built in ``out.partial``."""
    from milvus_lite import server_manager_instance
    from pymilvus import DataType, MilvusClient

    tmp = out.with_name(out.stem + ".partial.db")  # pymilvus takes a local path only when it ends in .db
    for stale in (tmp, out):  # the caller found no build record: whatever is here was interrupted
        if stale.exists():
            shutil.rmtree(stale)
    t0 = time.perf_counter()
    client = MilvusClient(uri=str(tmp))
    schema = MilvusClient.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    schema.add_field("path", DataType.VARCHAR, max_length=512)
    schema.add_field("camera", DataType.INT32)
    schema.add_field("vehicle_id", DataType.INT64)
    schema.add_field("timestamp", DataType.VARCHAR, max_length=32)
    client.create_collection("gallery", schema=schema)
    for s in range(0, len(vectors), batch):
        items = fake_items(s, min(s + batch, len(vectors)))
        client.insert("gallery", [{"id": s + j, "embedding": v, "path": it.path, "camera": it.camera,
                                   "vehicle_id": it.vehicle_id, "timestamp": it.timestamp}
                                  for j, (it, v) in enumerate(zip(items, vectors[s:s + batch]))])
    client.flush("gallery")
    t1 = time.perf_counter()
    params = client.prepare_index_params()
    # pymilvus 3 sends add_index(params={...}) as flat key/values, which Milvus Lite 3 ignores (it reads one
    # JSON "params" key): nest them so M and efConstruction are really used (describe_index shows them).
    params.add_index(field_name="embedding", index_type="HNSW", metric_type="IP",
                     params={"params": {"M": m, "efConstruction": ef_construction}})
    client.create_index("gallery", params)
    while (info := client.describe_index("gallery", "embedding")).get("pending_index_rows", 0):
        time.sleep(1)
    record = {"index_type": "HNSW", "params": info.get("params"), "n": len(vectors),
              "rows_s": round(t1 - t0, 1), "faiss_build_s": round(time.perf_counter() - t1, 1)}
    client.close()
    server_manager_instance.release_server(str(tmp))
    atomic_write_json(tmp.parent / f".{out.name}.{BUILD_RECORD}", record)
    tmp.rename(out)
    (tmp.parent / f".{out.name}.{BUILD_RECORD}").rename(out.parent / f"{out.name}.{BUILD_RECORD}")
    return record


def milvus_missing() -> str | None:
    """Why the Milvus Lite row cannot run here (None: it can)."""
    try:
        import milvus_lite  # noqa: F401
        import pymilvus  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install pymilvus milvus-lite)"
    return None


def size_folder(out: Path, vectors: str, n: int, dim: int, seed: int, queries: int) -> Path:
    return out / f"{vectors}-n{n}-d{dim}-q{queries}-s{seed}"


def build(args: argparse.Namespace) -> None:
    """Write everything the time phase needs under ``args.out``, skipping what is there already."""
    for n in args.sizes:
        folder = size_folder(args.out, args.vectors, n, args.dim, args.seed, args.queries)
        build_data(folder, args.vectors, n, args.dim, args.queries, args.k, args.seed)
        g = np.load(folder / "data" / "gallery.npy", mmap_mode="r")
        for index_type, params in index_types(args):
            target = folder / _folder_name(index_type)
            if (target / BUILD_RECORD).is_file():
                print(f"{target}: built already", flush=True)
                continue
            print(f"{target}: building {index_type} {params} ...", flush=True)
            print(f"{target}: {json.dumps(build_gallery_index(target, g, index_type, params))}", flush=True)
        if n in args.milvus_sizes:
            target = folder / "milvus_hnsw.db"
            if (why := milvus_missing()) is not None:
                print(f"Milvus Lite row skipped: {why}", flush=True)
            elif (folder / f"{target.name}.{BUILD_RECORD}").is_file():
                print(f"{target}: built already", flush=True)
            else:
                print(f"{target}: building Milvus Lite HNSW ...", flush=True)
                print(f"{target}: {json.dumps(build_milvus(target, g, args.hnsw_m, args.ef_construction))}",
                      flush=True)


def index_types(args: argparse.Namespace) -> list[tuple[str, dict]]:
    params = {**DEFAULT_PARAMS, "efConstruction": args.ef_construction, "nprobe": args.nprobe}
    out = []
    if "flat" in args.methods:
        out.append(("Flat", params))
    if "hnsw" in args.methods:
        out.append((f"HNSW{args.hnsw_m},Flat", params))
    if "ivf" in args.methods:
        out.append((args.ivf, params))
    return out


# --- the time phase ---------------------------------------------------------------------------------
def _stats(times_s: list[float]) -> dict:
    ms = 1000 * np.asarray(times_s)
    return {"median": round(float(np.median(ms)), 4), "mean": round(float(ms.mean()), 4),
            "p95": round(float(np.percentile(ms, 95)), 4), "p99": round(float(np.percentile(ms, 99)), 4)}


def time_single(search, queries: np.ndarray, warmup: int = 20) -> tuple[dict, list[list[int]]]:
    """``search(q (1, d)) -> ids of its hits``, timed one query at a time: (statistics in ms, the ids)."""
    for q in queries[:warmup]:
        search(q[None])
    times, ids = [], []
    for q in queries:
        t = time.perf_counter()
        found = search(q[None])
        times.append(time.perf_counter() - t)
        ids.append([int(i) for i in found])
    return _stats(times), ids


def batch_qps(search, queries: np.ndarray, batch: int = 256) -> float:
    t = time.perf_counter()
    for i in range(0, len(queries), batch):
        search(queries[i:i + batch])
    return round(len(queries) / (time.perf_counter() - t), 1)


def recall(found: np.ndarray | list, exact: np.ndarray) -> float:
    return round(float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)])), 4)


def _mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return round(sum(p.stat().st_size for p in files) / 2**20, 1)


def time_gallery_index(folder: Path, q: np.ndarray, exact: np.ndarray, k: int, single: int,
                       settings: list[dict]) -> list[dict]:
    """Rows for one ``GalleryIndex`` folder: raw faiss and the product path, per search setting."""
    record = json.loads((folder / BUILD_RECORD).read_text())
    rows = []
    with GalleryIndex.open(folder) as idx:
        (segment,) = idx.vector_store.loaded()  # one segment after finalize: the index product searches use
        raw = segment.index

        def raw_search(x: np.ndarray) -> np.ndarray:  # faiss rows -> ids (segment rows are camera-major)
            rows = raw.search(x, k)[1]
            return np.where(rows >= 0, segment.columns.ids[np.clip(rows, 0, None)], -1)

        def product_search(x: np.ndarray) -> list[int]:
            return [h.image_id for h in idx.search(x, k)[0]]

        for setting in settings:
            idx.params.update(setting)
            apply_search_params(raw, idx.params)
            raw_stats, raw_ids = time_single(lambda x: raw_search(x)[0], q[:single])
            product_stats, product_ids = time_single(product_search, q[:single])
            row = {"method": f"faiss {idx.index_type}", "engine": "faiss", "index_type": idx.index_type,
                   "search_params": setting, "n": len(idx), "dim": idx.dim,
                   "recall_at_10": recall(raw_search(q), exact), "queries_timed": single,
                   **_paired(raw_stats, raw_ids, product_stats, product_ids),
                   "batch_qps": batch_qps(raw_search, q),
                   "build_s": round(record["rows_s"] + record["faiss_build_s"], 1),
                   "faiss_build_s": record["faiss_build_s"], "index_mb": _mb(folder / SEGMENTS_DIR),
                   "folder_mb": _mb(folder)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def _paired(raw_stats: dict, raw_ids: list, product_stats: dict, product_ids: list) -> dict:
    return {"raw_ms": raw_stats, "product_ms": product_stats,
            "product_overhead_ms": round(product_stats["median"] - raw_stats["median"], 4),
            "product_same_ids": round(float(np.mean([a == b for a, b in zip(raw_ids, product_ids)])), 4)}


def time_brute(g: np.ndarray, q: np.ndarray, exact: np.ndarray, k: int, single: int) -> list[dict]:
    """numpy and torch brute force over the gallery matrix (raw rows: no metadata)."""
    gt = torch.from_numpy(g)

    def np_search(x):
        s = x @ g.T
        part = np.argpartition(-s, k, axis=1)[:, :k]
        order = np.take_along_axis(s, part, 1).argsort(axis=1)[:, ::-1]
        return np.take_along_axis(part, order, 1)

    def torch_search(x):
        return torch.topk(torch.from_numpy(x) @ gt.T, k, dim=1).indices.numpy()

    rows = []
    for method, search in (("numpy brute force", np_search), ("torch brute force", torch_search)):
        stats, _ = time_single(lambda x, search=search: search(x)[0], q[:single])
        row = {"method": method, "engine": method.split()[0], "index_type": "brute force", "search_params": {},
               "n": len(g), "dim": g.shape[1], "recall_at_10": recall(search(q), exact), "queries_timed": single,
               "raw_ms": stats, "product_ms": None, "batch_qps": batch_qps(search, q), "build_s": 0.0,
               "index_mb": round(g.nbytes / 2**20, 1)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def time_milvus(db: Path, q: np.ndarray, exact: np.ndarray, k: int, single: int, efs: list[int]) -> list[dict]:
    """Milvus Lite HNSW rows: bare (ids only) and with the metadata fields the product returns."""
    from milvus_lite import server_manager_instance
    from pymilvus import MilvusClient

    record = json.loads((db.parent / f"{db.name}.{BUILD_RECORD}").read_text())
    client = MilvusClient(uri=str(db))
    client.load_collection("gallery")
    n = int(client.get_collection_stats("gallery")["row_count"])
    rows = []

    def search(x: np.ndarray, fields: list[str], ef: int) -> list[list[int]]:
        res = client.search("gallery", data=list(x), limit=k, output_fields=fields,
                            search_params={"metric_type": "IP", "params": {"ef": max(ef, k)}})
        return [[h["id"] for h in hits] for hits in res]

    try:
        for ef in efs:
            raw_stats, raw_ids = time_single(lambda x, ef=ef: search(x, ["id"], ef)[0], q[:single])
            meta_stats, meta_ids = time_single(lambda x, ef=ef: search(x, META_FIELDS, ef)[0], q[:single])
            row = {"method": "Milvus Lite HNSW", "engine": "milvus-lite", "index_type": "HNSW",
                   "search_params": {"ef": ef}, "build_params": record["params"], "n": n, "dim": q.shape[1],
                   "recall_at_10": recall(search(q, ["id"], ef), exact), "queries_timed": single,
                   **_paired(raw_stats, raw_ids, meta_stats, meta_ids),
                   "batch_qps": batch_qps(lambda x, ef=ef: search(x, ["id"], ef), q),
                   "build_s": round(record["rows_s"] + record["faiss_build_s"], 1),
                   "faiss_build_s": record["faiss_build_s"], "index_mb": _mb(db), "folder_mb": _mb(db)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    finally:
        client.close()
        server_manager_instance.release_server(str(db))
    return rows


def time_all(args: argparse.Namespace) -> list[dict]:
    rows = []
    for n in args.sizes:
        folder = size_folder(args.out, args.vectors, n, args.dim, args.seed, args.queries)
        if not (folder / "data" / "exact_ids.npy").is_file():
            print(f"{folder}: no data; run --phase build first (skipped)", flush=True)
            continue
        q = np.load(folder / "data" / "queries.npy")
        exact = np.load(folder / "data" / "exact_ids.npy")[:, :args.k]
        brute = min(args.brute_queries, len(q))
        for index_type, _ in index_types(args):
            target = folder / _folder_name(index_type)
            if not (target / BUILD_RECORD).is_file():
                print(f"{target}: not built (yet); run --phase build (skipped)", flush=True)
                continue
            if index_type == "Flat":
                settings, single = [{}], brute
            elif index_type.startswith("HNSW"):
                settings, single = [{"efSearch": ef} for ef in args.hnsw_ef], len(q)
            else:
                settings, single = [{"nprobe": args.nprobe}], len(q)
            rows += time_gallery_index(target, q, exact, args.k, single, settings)
        if "brute" in args.methods:
            rows += time_brute(np.load(folder / "data" / "gallery.npy"), q, exact, args.k, brute)
        if n in args.milvus_sizes:
            db = folder / "milvus_hnsw.db"
            if (why := milvus_missing()) is not None:
                print(f"Milvus Lite row skipped: {why}", flush=True)
            elif not (folder / f"{db.name}.{BUILD_RECORD}").is_file():
                print(f"{db}: not built (yet); run --phase build (skipped)", flush=True)
            else:
                rows += time_milvus(db, q, exact, args.k, len(q), args.hnsw_ef)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per size: the fastest faiss HNSW setting (product median) that reaches the recall goal."""
    out = {}
    for n in sorted({r["n"] for r in rows}):
        ok = [r for r in rows if r["n"] == n and r["engine"] == "faiss" and r["index_type"].startswith("HNSW")
              and r["recall_at_10"] >= GOAL["recall_at_10"]]
        best = min(ok, key=lambda r: r["product_ms"]["median"]) if ok else None
        exact = next((r for r in rows if r["n"] == n and r["index_type"] == "Flat"), None)
        out[str(n)] = best and {
            "best_hnsw": best["search_params"], "recall_at_10": best["recall_at_10"],
            "product_median_ms": best["product_ms"]["median"], "product_p95_ms": best["product_ms"]["p95"],
            "raw_median_ms": best["raw_ms"]["median"],
            "speedup_vs_exact_product": exact and round(exact["product_ms"]["median"]
                                                        / best["product_ms"]["median"], 1),
            "goal_met": best["product_ms"]["median"] <= GOAL["median_ms"]
            and best["product_ms"]["p95"] <= GOAL["p95_ms"]}
    return out


def markdown(rows: list[dict]) -> str:
    """One line per row; times in ms (median / mean / p95) over ``queries_timed`` single queries."""
    def fmt(s: dict | None) -> str:
        return "-" if s is None else f"{s['median']:.3g} / {s['mean']:.3g} / {s['p95']:.3g}"

    lines = ["| method | search | n | recall@10 | raw ms (med / mean / p95) | product ms (med / mean / p95) "
             "| queries | batch q/s | build s | index MB |", "|" + "---|" * 10]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["search_params"].items()) or "-"
        lines.append(f"| {r['method']} | {params} | {r['n']:,} | {r['recall_at_10']:.4f} | {fmt(r['raw_ms'])} "
                     f"| {fmt(r['product_ms'])} | {r['queries_timed']} | {r['batch_qps']:,.0f} "
                     f"| {r['build_s']:.0f} | {r['index_mb']:,.0f} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phase", choices=["build", "time", "both", "scale"], default="both",
                    help="scale: benchmarks/search_scale.py with the other arguments")
    ap.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--vectors", choices=["clustered", "random"], default="clustered")
    ap.add_argument("--queries", type=int, default=1000, help="single queries timed (approximate indexes)")
    ap.add_argument("--brute-queries", type=int, default=200,
                    help="single queries timed for the linear-time exact methods (Flat, numpy, torch)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", nargs="+", choices=["flat", "hnsw", "ivf", "brute"],
                    default=["flat", "hnsw", "ivf", "brute"])
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--ef-construction", type=int, default=DEFAULT_PARAMS["efConstruction"])
    ap.add_argument("--hnsw-ef", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--ivf", default="IVF512,PQ64")
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--milvus-sizes", type=int, nargs="*", default=[200_000],
                    help="sizes (among --sizes) that get a Milvus Lite HNSW row; none: no row")
    ap.add_argument("--out", type=Path, default=Path("runs/search_speed"), help="vectors and indexes")
    ap.add_argument("--json", type=Path, default=Path("docs/search_speed.json"), help="the time phase's report")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | list | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--phase" in argv and argv[argv.index("--phase") + 1:][:1] == ["scale"]:  # benchmarks/search_scale.py
        at = argv.index("--phase")
        spec = importlib.util.spec_from_file_location("search_scale", Path(__file__).with_name("search_scale.py"))
        scale = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(scale)
        return scale.main(argv[:at] + argv[at + 2:])
    args = parse_args(argv)
    with threadpool_limits(limits=1):
        faiss.omp_set_num_threads(1)
        torch.set_num_threads(1)
        if args.phase in ("build", "both"):
            build(args)
        if args.phase == "build":
            return None
        pools = [{k: p[k] for k in ("user_api", "internal_api", "num_threads")} for p in threadpool_info()]
        load_before = os.getloadavg()
        rows = time_all(args)
    report = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"},
              "goal": GOAL, "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "load_avg_at_start": load_before,
              "load_avg_at_end": os.getloadavg(), "thread_pools": pools, "faiss": faiss.__version__,
              "rows": rows, "summary": summarise(rows)}
    print(markdown(rows))
    print(json.dumps(report["summary"]))
    if args.json.is_file():  # the scale phase's rows stay
        report.update({k: v for k, v in json.loads(args.json.read_text()).items() if k.startswith("scale_")})
    atomic_write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
