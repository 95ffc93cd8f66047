"""The index's record and its vectors cannot disagree: an old-format or damaged index is refused in one
line, readers follow writers (adds, merges, removals), sharded resumes merge each file once, one part
setting per index, odd folder names."""

import shutil
import sqlite3

import faiss
import numpy as np
import pytest

from pgan.errors import PganError
from pgan.index import GalleryIndex, GalleryItem, add_to_index, build_index
from pgan.index.build import _held_by_shards, _merge_shards
from pgan.index.gallery import GalleryEntry
from pgan.index.store import DB_NAME, SEGMENTS_DIR
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
    assert (info["segments"], info["log_segments"]) == (1, 0)
    assert len(list((tmp_path / "idx" / SEGMENTS_DIR).glob("*.faiss"))) == 1  # the earlier index's are gone


def test_an_index_of_the_old_format_or_with_a_missing_segment_is_one_line(tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    conn = sqlite3.connect(old / DB_NAME)
    conn.executescript("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
                       "INSERT INTO meta VALUES ('schema_version', '1'), ('dim', '8'), ('index_type', 'Flat');")
    conn.commit(), conn.close()
    with pytest.raises(PganError, match="has index format 1; this pgan reads format 2.*pgan index build"):
        GalleryIndex.open(old)
    idx, vecs = _random_index(tmp_path / "a", 12, seed=1)
    idx.close()
    for f in (tmp_path / "a" / SEGMENTS_DIR).glob("*.faiss"):
        f.unlink()
    reader = GalleryIndex.open(tmp_path / "a")
    assert not reader.info()["complete"] and "is missing" in reader.info()["vectors_problem"]
    with pytest.raises(PganError, match="is missing from"):
        reader.search(vecs[:1], 1)


def test_a_reader_sees_each_committed_batch_at_once_and_follows_merges(tmp_path):
    writer, vecs = _random_index(tmp_path / "idx", 10)
    reader = GalleryIndex.open(tmp_path / "idx")
    assert reader.search(vecs[:1], 1)[0][0].image_id == 0
    new = _unit(5, seed=9)
    writer.add_batch([GalleryItem(f"/g/new{i}.jpg") for i in range(5)], new)  # committed: a log segment
    hit = reader.search(new[2:3], 1)[0][0]  # without reopening
    assert hit.image_id == 12 and hit.path == "/g/new2.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert reader.searchable() == 15 and reader.info()["log_segments"] == 1 and reader.info()["complete"]
    assert writer.finalize() == 15
    assert reader.info()["log_segments"] == 0
    hits = reader.search(np.concatenate([vecs, new]), 1)
    assert [h[0].image_id for h in hits] == list(range(15))
    assert reader.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize("kind, params, attr, want", [("HNSW32,Flat", None, "efSearch", 128),
                                                      ("HNSW32,Flat", {"efSearch": 48}, "efSearch", 48),
                                                      ("IVF2,Flat", {"nprobe": 2}, "nprobe", 2)])
def test_search_parameters_apply_right_after_finalize(tmp_path, kind, params, attr, want):
    idx, _ = _random_index(tmp_path / "idx", 40, index_type=kind, params=params)  # the same process, no reopen
    (segment,) = idx.vector_store.loaded()
    inner = faiss.downcast_index(segment.index)
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
