"""The ``auto`` index type (one choice per segment by its rows), search settings measured against a recall
target, camera-major faiss segments and exact filtered search over runs of rows."""

from __future__ import annotations

import os

import faiss
import numpy as np
import pytest

from pgan.index import GalleryIndex, GalleryItem, choose_index_type, tuning, warm
from pgan.index import segments as seg

DIM = 32


def _clustered(n: int, seed: int, centres: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(centres, DIM))
    v = c[rng.integers(0, centres, n)] + 0.6 * rng.normal(size=(n, DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _near(g: np.ndarray, n: int, seed: int) -> np.ndarray:
    """New queries from the gallery's distribution: rows of it, moved."""
    rng = np.random.default_rng(seed)
    v = g[rng.choice(len(g), n, replace=False)] + 0.3 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def _items(n: int) -> list[GalleryItem]:
    return [GalleryItem(f"/g/{i}.jpg", camera=i % 7, vehicle_id=i // 3, timestamp=f"{1000 + i:08d}")
            for i in range(n)]


def _exact(g: np.ndarray, q: np.ndarray, k: int, keep: np.ndarray | None = None) -> list[list[int]]:
    s = q @ g.T
    if keep is not None:
        s[:, ~keep] = -np.inf
    return [list(np.argsort(-row, kind="stable")[:k]) for row in s]


@pytest.mark.parametrize("rows, dim, want", [(100_000, 512, "Flat"), (100_001, 512, "IVF1024,PQ128x4fs,RFlat"),
                                             (1_000_000, 512, "IVF4096,PQ128x4fs,RFlat"),
                                             (200_000, 1792, "IVF2048,PQ448x4fs,RFlat"),
                                             (1_000_000, 510, "IVF4096,Flat"),
                                             (10 ** 10, 512, "IVF65536,PQ128x4fs,RFlat")])
def test_auto_index_type_by_rows(rows, dim, want):
    assert tuning.auto_index_type(rows, dim) == want
    assert tuning.segment_index_type("auto", rows, dim) == want
    assert tuning.segment_index_type("HNSW32,Flat", rows, dim) == "HNSW32,Flat"
    assert choose_index_type(rows, "faiss", dim) == want and choose_index_type(rows, "milvus") == "HNSW32"


def test_tune_reaches_the_target_and_leaves_each_query_out():
    g = _clustered(4000, 0)
    index = seg.new_inner_index(DIM, "IVF64,Flat", {})
    index.train(g)
    index.add(g)
    got = tuning.tune(index, g, 0.99)
    assert set(got) == {"nprobe", "tuned_recall"} and got["tuned_recall"] >= 0.99
    assert got["nprobe"] in tuning.NPROBE_CHOICES or got["nprobe"] == 64
    smaller = [c for c in tuning.NPROBE_CHOICES if c < got["nprobe"]]
    if smaller:  # the least setting: one step down misses the target
        got_less = tuning.tune(index, g, 1.01)  # unreachable: walks every choice, ends at nlist
        assert got_less["nprobe"] == 64 and got_less["tuned_recall"] == pytest.approx(1.0)
    hnsw = seg.new_inner_index(DIM, "HNSW8,Flat", {"efConstruction": 16})
    hnsw.add(g)
    got = tuning.tune(hnsw, g, 0.95)
    assert "efSearch" in got and got["tuned_recall"] >= 0.95
    assert tuning.tune(seg.new_inner_index(DIM, "Flat", {}), g, 0.99) == {}
    # at worst every list is probed and the IVF is exact: recall 1 (the query's own row is not a miss)
    exact = seg.new_inner_index(DIM, "IVF16,Flat", {})
    exact.train(g)
    exact.add(g)
    got = tuning.tune(exact, g, 1.0)
    assert got["tuned_recall"] == 1.0 and got["nprobe"] <= 16


def test_train_sample_is_sorted_and_bounded():
    index = seg.new_inner_index(DIM, "IVF16,Flat", {})
    assert np.array_equal(tuning.train_sample(500, index), np.arange(500))
    rows = tuning.train_sample(10_000, index)
    assert len(rows) == tuning.TRAIN_PER_LIST * 16 and np.all(np.diff(rows) > 0) and rows[-1] < 10_000
    assert np.array_equal(tuning.train_sample(10, seg.new_inner_index(DIM, "Flat", {})), np.arange(10))


@pytest.fixture
def auto_index(tmp_path, monkeypatch):
    """6,000 clustered items in an ``auto`` index whose exact limit is lowered to 2,000 rows (so the one
    merged segment is IVF + fast scan + refine) and tuned from 1,000 rows."""
    monkeypatch.setattr(tuning, "AUTO_EXACT_MAX", 2000)
    monkeypatch.setattr(tuning, "TUNE_MIN", 1000)
    g = _clustered(6000, 1)
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "auto")
    items = _items(len(g))
    for j in range(0, len(g), 1000):
        idx.add_batch(items[j:j + 1000], g[j:j + 1000])
    idx.finalize()
    yield idx, g
    idx.close()


def test_auto_segment_is_ivf_fast_scan_with_exact_refine_and_tuned(auto_index):
    idx, g = auto_index
    info = idx.info()
    assert info["index_type"] == "auto" and info["segment_types"] == {"IVF256,PQ8x4fs,RFlat": 1}
    (segment,) = idx.vector_store.loaded()
    assert segment.params["tuned_recall"] >= 0.99 and segment.params["nprobe"] <= 256
    assert segment.params["k_factor"] in tuning.K_FACTOR_CHOICES
    assert segment.flat is not None and segment.flat.shape == (6000, DIM)  # the refine stage's vectors
    assert isinstance(faiss.downcast_index(segment.index), faiss.IndexRefineFlat)
    # camera-major rows: cameras ascending, ids ascending within a camera
    cam, ids = segment.columns.camera, segment.columns.ids
    assert np.all(np.diff(cam) >= 0) and all(np.all(np.diff(ids[cam == c]) > 0) for c in range(7))
    assert np.array_equal(ids % 7, cam)
    for i in (0, 1, 2999, 5999):  # rows found by id whatever the order, vectors exact
        assert np.array_equal(idx.vector(i), g[i])
    q = _near(g, 100, 2)
    truth = _exact(g, q, 10)
    hits = idx.search(q, 10)
    recall = np.mean([len({int(h.path[3:-4]) for h in hs} & set(t)) / 10 for hs, t in zip(hits, truth)])
    assert recall >= 0.97


def test_filters_on_camera_major_rows_are_exact(auto_index):
    idx, g = auto_index
    q = _near(g, 20, 3)
    n = np.arange(len(g))
    cases = [(dict(camera=3), n % 7 == 3),  # one run of rows
             (dict(since="00002000", until="00002999"), (n >= 1000) & (n <= 1999)),  # one run per camera
             (dict(camera=2, since="00001000", until="00004999"), (n % 7 == 2) & (n < 4000)),
             (dict(vehicle_id=100), n // 3 == 100)]  # scattered rows: faiss by row numbers
    for kwargs, keep in cases:
        want = _exact(g, q, 10, keep)
        got = idx.search(q, 10, **kwargs)
        assert [[int(h.path[3:-4]) for h in hs] for hs in got] == [w[:len(hs)] for w, hs in zip(want, got)]
        assert all(len(hs) == min(10, int(keep.sum())) for hs in got)
    wide = idx.search(q, 10, exclude_camera=0)  # 6/7 of the rows: the IVF with a selector, refined exactly
    assert all(int(h.path[3:-4]) % 7 != 0 for hs in wide for h in hs) and all(len(hs) == 10 for hs in wide)
    truth = _exact(g, q, 10, n % 7 != 0)
    recall = np.mean([len({int(h.path[3:-4]) for h in hs} & set(t)) / 10 for hs, t in zip(wide, truth)])
    assert recall >= 0.97


def test_removed_items_leave_camera_major_segments_on_compaction(auto_index):
    idx, g = auto_index
    idx.remove(ids=list(range(0, 6000, 5)))
    assert idx.compact() == 4800
    (segment,) = idx.vector_store.loaded()
    assert len(segment) == 4800 and not np.isin(segment.columns.ids, np.arange(0, 6000, 5)).any()
    assert np.all(np.diff(segment.columns.camera) >= 0)
    hits = idx.search(g[:10], 1)
    assert [int(h[0].path[3:-4]) for h in hits[1:5]] == [1, 2, 3, 4] and int(hits[0][0].path[3:-4]) != 0
    assert np.array_equal(idx.vector(7), g[7])


def test_auto_falls_back_to_exact_where_no_setting_reaches_the_target(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(tuning, "AUTO_EXACT_MAX", 2000)
    monkeypatch.setattr(tuning, "TUNE_MIN", 1000)
    rng = np.random.default_rng(5)
    g = rng.normal(size=(4000, DIM)).astype(np.float32)  # uniform on the sphere: no cells to find
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    for kind, exact in (("auto", True), ("IVF256,PQ8x4fs,RFlat", False)):
        idx = GalleryIndex.create(tmp_path / kind, DIM, "fp-test", "model.pt", kind,
                                  {"recall_target": 0.9999})
        idx.add_batch(_items(len(g)), g)
        idx.finalize()
        (segment,) = idx.vector_store.loaded()
        types = idx.info()["segment_types"]
        if exact:  # auto keeps the recall it promised: this segment is exact, and says what was missed
            assert types == {"Flat": 1} and segment.params["unreached"]["index_type"] == "IVF256,PQ8x4fs,RFlat"
            assert segment.params["unreached"]["recall"] < 0.9999
            q = g[:20] + 0.01
            assert [[int(h.path[3:-4]) for h in hs] for hs in idx.search(q, 10)] == _exact(g, q, 10)
        else:  # an explicit type is kept, with the warning naming Flat
            assert types == {"IVF256,PQ8x4fs,RFlat": 1} and segment.params["tuned_recall"] < 0.9999
        idx.close()
    assert "searched exactly (Flat) instead" in caplog.text and "--index-type Flat" in caplog.text


def test_prefetch_warms_large_segment_files_in_the_background(tmp_path, monkeypatch):
    f = tmp_path / "seg.faiss"
    f.write_bytes(b"\0" * 4096)
    assert warm.prefetch(f) is None  # under PREFETCH_MIN: the first searches read it
    assert warm.prefetch(tmp_path / "gone.faiss") is None
    monkeypatch.setattr(warm, "PREFETCH_MIN", 1024)
    thread = warm.prefetch(f)
    assert thread is not None and thread.daemon and thread.name == "prefetch seg.faiss"
    thread.join(10)
    assert not thread.is_alive()
    monkeypatch.setattr(warm, "_mem_available", lambda: 4096)  # over half the memory available: skipped
    assert warm.prefetch(f) is None


def test_the_mapped_vectors_of_a_segment_are_found_and_populated(tmp_path):
    x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)  # unit rows: each row is its own best inner product
    for factory in ("Flat", "HNSW8,Flat", "IVF16,PQ4x4fs,RFlat"):
        index = faiss.index_factory(16, factory, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.add(x)
        path = tmp_path / f"{factory.replace(',', '_')}.faiss"
        faiss.write_index(index, str(path))
        in_memory = faiss.read_index(str(path))
        assert warm.mapped_ranges(in_memory) == []  # read into memory: nothing mapped to warm
        owner = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)
        ranges = warm.mapped_ranges(owner)
        assert [size for _, size in ranges] == [x.nbytes]  # the float32 vectors, wherever they sit
        if hasattr(os, "sched_getaffinity"):  # Linux: the kernel maps them in
            assert warm.populate(ranges)
        found = faiss.downcast_index(owner).search(x[:3], 1)[1][:, 0]
        assert found.tolist() == [0, 1, 2]  # still the same index after warming
    assert not warm.populate([])
