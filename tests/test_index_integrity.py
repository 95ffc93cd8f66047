"""The index's two files cannot disagree: a stale or foreign faiss file is rebuilt or refused, readers follow
a writer's snapshots, sharded resumes merge each file once, one part setting per index, odd folder names."""

import json
import shutil
import sqlite3

import faiss
import numpy as np
import pytest

from pgan.errors import PganError, StaleVectorsError
from pgan.index import GalleryIndex, GalleryItem, add_to_index, build_index
from pgan.index.build import _held_by_shards, _merge_shards
from pgan.index.gallery import GalleryEntry
from pgan.index.store import DB_NAME, FAISS_NAME
from pgan.inference import FeatureExtractor

DIM = 8


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _random_index(path, n: int, seed: int = 0, index_type: str = "Flat", params=None, prefix: str = "img"):
    idx = GalleryIndex.create(path, DIM, "fp-test", "model.pt", index_type, params)
    vecs = _unit(n, seed)
    idx.add_batch([GalleryItem(f"/g/{prefix}{i}.jpg", camera=i % 3) for i in range(n)], vecs)
    idx.finalize()
    return idx, vecs


@pytest.fixture(scope="module")
def extractor(tiny_checkpoint):
    return FeatureExtractor(tiny_checkpoint("pgan"), parts="proposals", device="cpu", batch_size=8)


def test_rebuilding_into_a_folder_whose_database_was_removed_never_serves_the_old_vectors(
        tiny_synth, tmp_path, extractor):
    files = sorted((tiny_synth / "image_test").iterdir())
    small, big = tmp_path / "small", tmp_path / "big"
    small.mkdir()
    for f in files[8:]:  # the earlier, smaller gallery holds other images
        shutil.copy(f, small / f.name)
    shutil.copytree(tiny_synth / "image_test", big)
    build_index(small, tmp_path / "idx", extractor=extractor, progress=False)
    (tmp_path / "idx" / DB_NAME).unlink()
    build_index(big, tmp_path / "idx", extractor=extractor, progress=False)
    idx = GalleryIndex.open(tmp_path / "idx")
    queries = sorted(big.iterdir())
    hits = idx.search(extractor(queries), topk=1)
    found = sum(h[0].path == str(q.resolve()) and h[0].score > 0.9999 for q, h in zip(queries, hits))
    assert found == len(queries) == 16
    info = idx.info()
    assert info["complete"] and info["searchable"] == info["size"] == 16
    origin = json.loads((tmp_path / "idx" / "vectors.faiss.json").read_text())
    assert origin["build_id"] == info["build_id"] and origin["rows"] == 16 and origin["max_id"] == 15


def test_a_foreign_faiss_file_is_refused_by_readers_and_rebuilt_by_writers(tmp_path):
    a, va = _random_index(tmp_path / "a", 12, seed=1)
    b, _ = _random_index(tmp_path / "b", 12, seed=2)
    a.close(), b.close()
    for name in (FAISS_NAME, "vectors.faiss.json"):  # same size and model, another database's vectors
        shutil.copy(tmp_path / "b" / name, tmp_path / "a" / name)
    reader = GalleryIndex.open(tmp_path / "a")
    with pytest.raises(StaleVectorsError, match="another database.*rerun the same 'pgan index build'"):
        reader.search(va[:1], 1)
    assert not reader.info()["complete"] and "another database" in reader.info()["vectors_problem"]
    (tmp_path / "a" / "vectors.faiss.json").unlink()  # a faiss file with no record at all (an older pgan)
    with pytest.raises(StaleVectorsError, match="carries no record"):
        GalleryIndex.open(tmp_path / "a").search(va[:1], 1)
    writer = GalleryIndex.open(tmp_path / "a", readonly=False)
    assert writer.finalize() == 12  # rebuilt from the stored vectors
    hits = GalleryIndex.open(tmp_path / "a").search(va, 1)
    assert [h[0].image_id for h in hits] == list(range(12)) and hits[5][0].score == pytest.approx(1.0, abs=1e-5)


def test_a_reader_keeps_its_snapshot_while_a_writer_adds_and_then_picks_up_the_next(tmp_path):
    writer, vecs = _random_index(tmp_path / "idx", 10)
    reader = GalleryIndex.open(tmp_path / "idx")
    assert reader.search(vecs[:1], 1)[0][0].image_id == 0
    new = _unit(5, seed=9)
    writer.add_batch([GalleryItem(f"/g/new{i}.jpg") for i in range(5)], new)  # committed, not yet in faiss
    hits = reader.search(new[:1], 3)[0]  # still answers, from the 10-row snapshot
    assert len(hits) == 3 and all(h.image_id < 10 for h in hits) and reader.searchable() == 10
    assert reader.info()["searchable"] == 10 and reader.info()["size"] == 15 and not reader.info()["complete"]
    writer.finalize()
    hit = reader.search(new[2:3], 1)[0][0]  # the next snapshot, without reopening
    assert hit.image_id == 12 and hit.path == "/g/new2.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert reader.searchable() == 15 and reader.info()["complete"]
    assert reader.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kind, params, attr, want", [("HNSW32,Flat", None, "efSearch", 128),
                                                      ("HNSW32,Flat", {"efSearch": 48}, "efSearch", 48),
                                                      ("IVF2,Flat", {"nprobe": 2}, "nprobe", 2)])
def test_search_parameters_apply_right_after_finalize(tmp_path, kind, params, attr, want):
    idx, _ = _random_index(tmp_path / "idx", 40, index_type=kind, params=params)  # the same process, no reopen
    inner = faiss.downcast_index(idx.faiss_index().index)
    got = inner.hnsw.efSearch if attr == "efSearch" else faiss.extract_index_ivf(inner).nprobe
    assert got == want


@pytest.mark.parametrize("name", ["gallery #1", "what?mode=rw", "100% sure", "a&b=c"])
def test_index_folders_with_any_character_open(tmp_path, name):
    _, vecs = _random_index(tmp_path / name / "idx", 6)
    with GalleryIndex.open(tmp_path / name / "idx") as idx:
        assert idx.search(vecs[3:4], 1)[0][0].image_id == 3 and idx.info()["complete"]
        with pytest.raises(sqlite3.OperationalError):  # opened read-only, as asked
            idx.conn.execute("DELETE FROM items")


def test_sharded_resume_with_another_world_size_merges_each_file_once(tmp_path):
    out = tmp_path / "idx"
    main = GalleryIndex.create(out, DIM, "fp-test", "model.pt")
    vecs = {p: v for p, v in zip("abcd", _unit(4, seed=3))}
    # An earlier run with 3 processes left shards 0-2; one file sits in two of them.
    for rank, held in enumerate(["ab", "ca", "d"]):
        shard = GalleryIndex.create(out / "shards" / f"rank{rank}", DIM, "fp-test", "model.pt")
        shard.add_batch([GalleryItem(f"/g/{p}.jpg") for p in held], np.stack([vecs[p] for p in held]))
        shard.close()
    assert _held_by_shards(out) == {f"/g/{p}.jpg" for p in "abcd"}  # a resume embeds none of them again
    todo = [GalleryEntry(f"/g/{p}.jpg") for p in "dcba"]
    added, skipped = _merge_shards(main, out, 2, todo)  # resumed with 2 processes
    assert (added, skipped) == (4, [])
    ids, stored = main.vectors()
    assert [main.get(i).path for i in ids] == [f"/g/{p}.jpg" for p in "dcba"]  # gallery order
    np.testing.assert_array_equal(stored, np.stack([vecs[p] for p in "dcba"]))
    assert not (out / "shards").exists()


def test_index_add_uses_the_recorded_part_setting_and_refuses_another(tiny_synth, tiny_checkpoint, tmp_path,
                                                                       extractor):
    files = sorted((tiny_synth / "image_test").iterdir())
    first, more = tmp_path / "first", tmp_path / "more"
    first.mkdir(), more.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, (first if i < 10 else more) / f.name)
    build_index(first, tmp_path / "idx", extractor=extractor, progress=False)  # parts: proposals
    with pytest.raises(PganError, match="built with parts 'proposals'; 'index add' must use the same"):
        add_to_index(tmp_path / "idx", more, parts="grid", device="cpu", progress=False)
    assert len(GalleryIndex.open(tmp_path / "idx")) == 10  # nothing written
    report = add_to_index(tmp_path / "idx", more, device="cpu", progress=False)  # no --parts: the index's
    assert report.added == 6
    idx = GalleryIndex.open(tmp_path / "idx")
    hit = idx.search(extractor([sorted(more.iterdir())[0]]), 1)[0][0]
    assert hit.path == str(sorted(more.iterdir())[0].resolve()) and hit.score == pytest.approx(1.0, abs=1e-5)
