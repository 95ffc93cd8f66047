"""Against a real Milvus standalone server (the ``milvus`` package's, started on 127.0.0.1 in a temp folder):
a build searchable at once (no 'collection not loaded'), adds from two processes, removal, filters inside
Milvus, and two serving replicas that both see a third process's add and removal. Slow suite only."""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np
import pytest

from bench_helpers import load_benchmark
from pgan.errors import PganError
from pgan.index import GalleryIndex, GalleryItem

pytestmark = pytest.mark.slow
DIM = 16


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _items(prefix: str, n: int) -> list[GalleryItem]:
    return [GalleryItem(f"/g/{prefix}{i}.jpg", camera=i % 4, vehicle_id=i // 2, timestamp=f"{1000 + i:08d}")
            for i in range(n)]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    helper = load_benchmark("milvus_standalone")
    reason = helper.missing()
    if reason:
        pytest.skip(f"no Milvus standalone server: {reason}")
    with helper.standalone(tmp_path_factory.mktemp("milvus-server")) as uri:
        yield uri


def _writer(target: str, prefix: str, seed: int, n: int = 20) -> None:
    """One writer process: ``n`` items in batches of 5 into the index folder or handle ``target``."""
    idx = GalleryIndex.open(target, readonly=False)
    vecs = _unit(n, seed)
    items = _items(prefix, n)
    for b in range(0, n, 5):
        idx.add_batch(items[b:b + 5], vecs[b:b + 5])
    idx.finalize()
    idx.close()


def test_build_two_writers_remove_and_filter_on_a_real_server(server, tmp_path):
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "HNSW32", backend="milvus",
                              uri=server, collection="writers")
    base = _unit(12, 0)
    idx.add_batch(_items("base", 12), base)
    assert idx.finalize() == 12
    reader = GalleryIndex.open(tmp_path / "idx")  # a fresh process's view: loads the collection itself
    assert [h[0].image_id for h in reader.search(base, 1)] == list(range(12))
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "idx"), p, s)) for p, s in (("a", 1), ("b", 2))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(idx) == 52 and sorted(r[0] for r in idx.conn.execute("SELECT id FROM items")) == list(range(52))
    for prefix, seed in (("a", 1), ("b", 2)):
        hits = reader.search(_unit(20, seed), 1)
        assert [h[0].path for h in hits] == [f"/g/{prefix}{i}.jpg" for i in range(20)]
    cam = reader.search(base[:1], 52, camera=2, since="00001004", until="00001015")[0]
    assert cam and all(h.camera == 2 and "00001004" <= h.timestamp <= "00001015" for h in cam)
    assert len(cam) == sum(1 for p in ("base", "a", "b") for it in _items(p, 20 if p != "base" else 12)
                           if it.camera == 2 and 1004 <= int(it.timestamp) <= 1015)
    paths = ("/g/base0.jpg", "/g/base3.jpg", "/g/a0.jpg", "/g/b0.jpg")  # base3 by path, the rest by time
    gone = sorted(r[0] for r in idx.conn.execute(f"SELECT id FROM items WHERE path IN {paths}"))
    assert idx.remove(paths=["/g/base3.jpg"], before="00001001") == gone and len(idx) == 48
    hits = reader.search(base, 5)
    assert all(not set(gone) & {h.image_id for h in row} and len(row) == 5 for row in hits)
    with pytest.raises(PganError, match="no item with id 0"):
        idx.remove(ids=[0])


def test_two_serving_replicas_see_a_third_process_add_and_remove(server, tmp_path):
    from fastapi.testclient import TestClient

    from pgan.serve import ServeSettings, create_app
    from serve_helpers import FakeExtractor

    writer = GalleryIndex.create(tmp_path / "idx", 4, "f" * 16, "model.pt", "HNSW32", backend="milvus",
                                 uri=server, collection="replicas")
    vecs = np.abs(_unit(8, 3)[:, :4]) + 0.01
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    writer.add_batch(_items("r", 8), vecs)
    writer.finalize()
    apps = [create_app(GalleryIndex.open(tmp_path / "idx"), FakeExtractor(), ServeSettings(reload_seconds=0.2))
            for _ in range(2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        for client in (one, two):
            r = client.post("/api/search/batch", json={"vectors": [vecs[5].tolist()], "topk": 8})
            assert r.status_code == 200, r.text
            assert r.json()["queries"][0]["results"][0]["image_id"] == 5
        writer.remove(ids=[5])
        new = vecs[5:6] * 0.5 + vecs[6:7] * 0.5
        writer.add_batch([GalleryItem("/g/new.jpg", camera=1)], new / np.linalg.norm(new))
        for client in (one, two):  # bounded consistency: the add shows within seconds, the removal at once
            deadline = time.monotonic() + 20
            while True:
                ids = [h["image_id"] for h in client.post("/api/search/batch", json={
                    "vectors": [vecs[5].tolist()], "topk": 8}).json()["queries"][0]["results"]]
                assert 5 not in ids
                if 8 in ids or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            assert 8 in ids and len(ids) == 8


def test_a_build_with_a_real_model_is_searchable_at_once(server, tiny_synth, tiny_checkpoint, tmp_path):
    from pgan.index import build_index
    from pgan.inference import FeatureExtractor

    fx = FeatureExtractor(tiny_checkpoint("pgan"), parts="proposals", device="cpu", batch_size=8)
    report = build_index(tiny_synth / "image_test", tmp_path / "idx", extractor=fx, backend="milvus", uri=server,
                         progress=False)
    assert (report.added, report.index_type) == (16, "HNSW32")
    files = sorted((tiny_synth / "image_test").iterdir())
    with GalleryIndex.open(tmp_path / "idx") as idx:  # a new process's view: nothing loaded it for us
        assert idx.info()["complete"] and idx.searchable() == 16
        hits = idx.search(fx(files), 1)
        assert [h[0].path for h in hits] == [str(f.resolve()) for f in files]


def test_a_handle_keeps_the_whole_gallery_in_milvus(server, tmp_path, monkeypatch, tiny_synth, tiny_checkpoint):
    from fastapi.testclient import TestClient

    from pgan.index import build_index
    from pgan.inference import FeatureExtractor
    from pgan.serve import ServeSettings, create_app
    from serve_helpers import FakeExtractor

    monkeypatch.chdir(tmp_path)  # nothing may be written here
    handle = server.replace("http://", "milvus://") + "/handle_gallery"
    idx = GalleryIndex.create(handle, DIM, "f" * 16, "model.pt", "HNSW32")
    base = _unit(6, 0)
    assert len(idx.add_batch(_items("base", 6), base)) == 6 and idx.finalize() == 6
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(handle, p, s, 10)) for p, s in (("a", 1), ("b", 2))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0, 0]
    reader = GalleryIndex.open(handle)
    assert reader.refresh() is not None and reader.searchable() == 26 and reader.info()["local_bytes"] == 0
    hits = reader.search(_unit(10, 1), 1)
    assert [h[0].path for h in hits] == [f"/g/a{i}.jpg" for i in range(10)]
    assert hits[0][0].camera == 0 and hits[0][0].timestamp == "00001000" and hits[0][0].vehicle_id == 0
    cam = reader.search(base[:1], 26, camera=1, since="00001003")[0]
    assert sorted(h.path for h in cam) == sorted(f"/g/{p}{i}.jpg" for p, n in (("base", 6), ("a", 10), ("b", 10))
                                                 for i in range(n) if i % 4 == 1 and i >= 3)
    gone = idx.remove(paths=["/g/base2.jpg"])
    with pytest.raises(PganError, match="holds no item with id"):
        idx.remove(ids=gone)
    assert all(h.path != "/g/base2.jpg" for h in reader.search(base[2], 26)[0])
    apps = [create_app(GalleryIndex.open(handle), FakeExtractor(), ServeSettings(reload_seconds=0.2))
            for _ in range(2)]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        for client in (one, two):
            r = client.post("/api/search/batch", json={"vectors": [base[4].tolist()], "topk": 3})
            assert r.status_code == 200, r.text
            assert r.json()["queries"][0]["results"][0]["name"] == "base4.jpg"
    assert list(tmp_path.iterdir()) == []  # no local folder, no per-item data
    # build_index writes into a handle too, embedding with a real model
    fx = FeatureExtractor(tiny_checkpoint("pgan"), parts="proposals", device="cpu", batch_size=8)
    report = build_index(tiny_synth / "image_test", handle.replace("handle_gallery", "handle_built"), extractor=fx,
                         progress=False)
    assert report.added == 16
    files = sorted((tiny_synth / "image_test").iterdir())
    built = GalleryIndex.open(handle.replace("handle_gallery", "handle_built"))
    assert [h[0].path for h in built.search(fx(files[:4]), 1)] == [str(f.resolve()) for f in files[:4]]


def test_an_ivf_collection_on_the_server(server, tmp_path):
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "IVF16", backend="milvus", uri=server,
                              collection="ivf")
    vecs = _unit(300, 9)
    idx.add_batch([GalleryItem(f"/g/v{i}.jpg", camera=i % 3) for i in range(300)], vecs)
    assert idx.finalize() == 300
    desc = idx.vector_store.client.describe_index("ivf", "vector")
    assert desc["index_type"] == "IVF_FLAT" and str(desc["nlist"]) == "16"
    hits = idx.search(vecs[:20], 1, camera=None)
    assert [h[0].image_id for h in hits] == list(range(20))  # nprobe 32 >= nlist: exact
