"""Many writers, removal and filters inside the engine (faiss backend): concurrent adds from two processes,
removed items never returned (also by a reader opened before), compaction, a crashed writer's files,
segment merging, and filtered recall against exact filtered search."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from pgan.errors import PganError
from pgan.index import GalleryIndex, GalleryItem
from pgan.index import vectors as faiss_store
from pgan.index.records import time_value
from pgan.index.store import SEGMENTS_DIR

DIM = 16


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _items(start: int, n: int, prefix: str = "img") -> list[GalleryItem]:
    return [GalleryItem(f"/g/{prefix}{i}.jpg", camera=i % 10, vehicle_id=i // 4,
                        timestamp=None if i % 11 == 10 else f"{1000 + i:08d}") for i in range(start, start + n)]


def _writer(path: str, prefix: str, seed: int, batches: int) -> None:
    idx = GalleryIndex.open(path, readonly=False)
    vecs = _unit(batches * 5, seed)
    for b in range(batches):
        idx.add_batch(_items(b * 5, 5, prefix), vecs[b * 5:(b + 1) * 5])
    idx.finalize()
    idx.close()


def test_two_processes_adding_at_once_both_succeed(tmp_path):
    GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "HNSW32,Flat").close()
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "idx"), p, s, 12)) for p, s in (("a", 1), ("b", 2))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    idx = GalleryIndex.open(tmp_path / "idx")
    assert len(idx) == 120 and idx.searchable() == 120 and idx.info()["complete"]
    ids = [r[0] for r in idx.conn.execute("SELECT id FROM items ORDER BY id")]
    assert ids == list(range(120))  # unique, none lost
    for prefix, seed in (("a", 1), ("b", 2)):
        vecs = _unit(60, seed)
        hits = idx.search(vecs, 1)
        assert [h[0].path for h in hits] == [f"/g/{prefix}{i}.jpg" for i in range(60)]
        assert all(h[0].score == pytest.approx(1.0, abs=1e-5) for h in hits)


def test_removed_items_are_never_returned_and_compaction_drops_their_vectors(tmp_path):
    writer = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "Flat")
    vecs = _unit(40, 0)
    writer.add_batch(_items(0, 40), vecs)
    writer.finalize()
    reader = GalleryIndex.open(tmp_path / "idx")  # opened before the removal, like a serving process
    reader.auto_refresh = False
    assert reader.search(vecs[3], 1)[0][0].image_id == 3
    before = writer.info()["disk_bytes"]
    with pytest.raises(PganError, match="no item with id 99; nothing was removed"):
        writer.remove(ids=[3, 99])
    with pytest.raises(PganError, match="no image /g/nope.jpg; nothing was removed"):
        writer.remove(paths=["/g/img4.jpg", "/g/nope.jpg"])
    with pytest.raises(PganError, match="--before 'yesterday' is not a time"):
        writer.remove(before="yesterday")
    assert len(writer) == 40 and reader.search(vecs[4], 1)[0][0].image_id == 4  # nothing changed
    # ids 0-4 by time (timestamps 1000..1004), 7 by id, 20 by path
    assert writer.remove(ids=[7], paths=["/g/img20.jpg"], before="00001005") == [0, 1, 2, 3, 4, 7, 20]
    gone = {0, 1, 2, 3, 4, 7, 20}
    for q in (vecs[3], vecs[7], vecs[20]):
        hits = reader.search(q, 10)[0]
        assert len(hits) == 10 and not gone & {h.image_id for h in hits}
    assert {h.image_id for h in reader.search(vecs[0], 40)[0]} == set(range(40)) - gone
    assert writer.info()["tombstones"] == 7 and writer.info()["size"] == writer.info()["searchable"] == 33
    assert writer.compact() == 33
    info = writer.info()
    assert info["tombstones"] == 0 and info["segments"] == 1 and info["disk_bytes"] < before
    assert reader.search(vecs[8], 1)[0][0].image_id == 8 and reader.searchable() == 33
    with pytest.raises(KeyError):
        writer.vector(7)
    assert writer.add_batch(_items(40, 1), _unit(1, 5)) == [40]  # ids are never reused


@pytest.mark.parametrize("exact_max", [20_000, 0])  # small selections searched exactly / more through HNSW
def test_filters_run_inside_the_search_and_match_exact_filtered_search(tmp_path, monkeypatch, exact_max):
    from pgan.index import segments

    monkeypatch.setattr(segments, "EXACT_MAX", exact_max)
    n = 3000
    vecs = _unit(n, 3)
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "HNSW32,Flat",
                              {"efSearch": 64})
    idx.add_batch(_items(0, n), vecs)
    idx.finalize()
    items = _items(0, n)
    cams = np.array([it.camera for it in items])
    ts = np.array([time_value(it.timestamp) if it.timestamp else -1 for it in items])
    vids = np.array([it.vehicle_id for it in items])
    queries = _unit(20, 4)
    cases = [(dict(camera=3), cams == 3), (dict(exclude_camera=3), cams != 3),
             (dict(vehicle_id=77), vids == 77),
             (dict(since="00001500", until="00002200"), (ts >= 1500) & (ts <= 2200)),
             (dict(since="00001100", until="00001108"), (ts >= 1100) & (ts <= 1108)),  # one run of rows
             (dict(camera=2, since="00002000"), (cams == 2) & (ts >= 2000))]
    for kwargs, keep in cases:
        allowed = np.flatnonzero(keep)
        got = idx.search(queries, 10, **kwargs)
        exact = np.argsort(-(vecs[allowed] @ queries.T), axis=0)[:10].T
        found = [len({h.image_id for h in g} & set(allowed[e])) / min(10, len(allowed))
                 for g, e in zip(got, exact)]
        assert np.mean(found) >= 0.99, kwargs
        assert all(keep[h.image_id] for g in got for h in g)
        assert all(len(g) == min(10, len(allowed)) for g in got)


def test_a_crashed_writers_files_are_ignored_then_removed_and_segments_stay_few(tmp_path, monkeypatch):
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "Flat")
    vecs = _unit(60, 6)
    idx.add_batch(_items(0, 10), vecs[:10])
    idx.finalize()
    orphan = tmp_path / "idx" / SEGMENTS_DIR / "log-10-deadbeef.f32"  # written, never committed
    orphan.write_bytes(vecs[10:12].tobytes())
    reader = GalleryIndex.open(tmp_path / "idx")
    assert reader.searchable() == 10 and reader.search(vecs[11], 1)[0][0].image_id != 11
    monkeypatch.setattr(faiss_store, "ORPHAN_AGE_S", -1)
    for b in range(1, 11):  # ten adds, each finalized: merged so that few segments remain
        idx.add_batch(_items(b * 5 + 5, 5), vecs[b * 5 + 5:b * 5 + 10])
        idx.finalize()
    assert not orphan.exists()
    assert idx.info()["segments"] <= faiss_store.MAX_SEGMENTS and idx.info()["log_segments"] == 0
    hits = reader.search(vecs[:60], 1)
    assert [h[0].image_id for h in hits] == list(range(60))


def test_remove_from_index_resolves_paths_and_compacts(tmp_path):
    from pgan.index import remove_from_index

    photo = tmp_path / "gallery" / "a.jpg"
    photo.parent.mkdir()
    photo.write_bytes(b"x")
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "Flat")
    vecs = _unit(3, 8)
    idx.add_batch([GalleryItem(str(photo.resolve()))] + _items(1, 2), vecs)
    idx.finalize()
    idx.close()
    with pytest.raises(PganError, match="say what to remove"):
        remove_from_index(tmp_path / "idx")
    relative = photo.relative_to(tmp_path)
    import os

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        report = remove_from_index(tmp_path / "idx", paths=[relative], compact=True)
    finally:
        os.chdir(here)
    assert report == {"removed": 1, "ids": [0], "size": 2}
    with GalleryIndex.open(tmp_path / "idx") as after:
        assert after.info()["tombstones"] == 0 and after.searchable() == 2
        assert {h.image_id for h in after.search(vecs[0], 3)[0]} == {1, 2}


def _endless_writer(path: str) -> None:
    idx = GalleryIndex.open(path, readonly=False)
    for b in range(10_000):
        idx.add_batch(_items(b * 5, 5, "k"), _unit(5, 100 + b))


def test_a_writer_killed_mid_add_leaves_every_committed_batch_searchable(tmp_path):
    import os
    import signal
    import time

    GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "HNSW32,Flat").close()
    proc = mp.get_context("spawn").Process(target=_endless_writer, args=(str(tmp_path / "idx"),))
    proc.start()
    reader = GalleryIndex.open(tmp_path / "idx")
    deadline = time.monotonic() + 60
    while len(reader) < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # no cleanup, possibly inside a transaction or a file write
    proc.join()
    n = len(reader)
    assert n >= 40 and n % 5 == 0 and reader.searchable() == n and reader.info()["complete"]
    batches = n // 5
    for b in (0, batches - 1):
        hit = reader.search(_unit(5, 100 + b)[2], 1)[0][0]
        assert hit.path == f"/g/k{b * 5 + 2}.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    writer = GalleryIndex.open(tmp_path / "idx", readonly=False)  # the next add finalizes what it left
    assert writer.finalize() == n and writer.info()["log_segments"] == 0
