"""The milvus vector backend: the same searches, filters, resume and checks as faiss, against embedded
Milvus Lite (a ``.db`` path under tmp_path) and against ``milvus-lite server`` reached over http."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgan.errors import IndexMismatchError, PganError, StaleVectorsError
from pgan.index import GalleryIndex, GalleryItem, add_to_index, build_index
from pgan.index.milvus import filter_expression
from pgan.index.store import DB_NAME, SEGMENTS_DIR
from pgan.index.vector_store import SearchFilter
from pgan.inference.images import decode

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

DIM = 16


def _unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _items(n: int) -> list[GalleryItem]:
    """Cameras 0-3 and 8-digit timestamps, with some items lacking one or the other."""
    return [GalleryItem(f"/g/img{i}.jpg", camera=None if i % 7 == 6 else i % 4, vehicle_id=i // 3,
                        timestamp=None if i % 5 == 4 else f"{1000 + 10 * i:08d}") for i in range(n)]


def _filled(path, vecs, index_type="Flat", **backend) -> GalleryIndex:
    idx = GalleryIndex.create(path, DIM, "fp-test", "model.pt", index_type, **backend)
    idx.add_batch(_items(len(vecs)), vecs)
    idx.finalize()
    return idx


FILTERS = [SearchFilter(), SearchFilter(camera=2), SearchFilter(exclude_camera=1),
           SearchFilter.parse(since="00001100", until="00001400"), SearchFilter.parse(until="00001200"),
           SearchFilter.parse(camera=3, since="00001150"), SearchFilter(camera=9), SearchFilter(vehicle_id=4),
           SearchFilter.parse(vehicle_id=5, exclude_camera=3, until="00001200")]


@pytest.mark.parametrize("kind", ["HNSW32", "Flat"])
def test_searches_and_filters_equal_the_faiss_backend(tmp_path, kind):
    vecs = _unit(60, seed=0)
    faiss_idx = _filled(tmp_path / "faiss", vecs)
    milvus_idx = _filled(tmp_path / "milvus", vecs, kind, backend="milvus", uri=str(tmp_path / "g.db"))
    assert milvus_idx.finalize() == 60 and not (tmp_path / "milvus" / SEGMENTS_DIR).exists()
    queries = _unit(5, seed=1)
    for where in FILTERS:
        args = dict(camera=where.camera, exclude_camera=where.exclude_camera, since=where.since, until=where.until,
                    vehicle_id=where.vehicle_id)
        want = faiss_idx.search(queries, 8, **args)
        got = milvus_idx.search(queries, 8, **args)
        assert [[h.image_id for h in r] for r in got] == [[h.image_id for h in r] for r in want], where
        for g, w in zip(got, want):
            assert [h.score for h in g] == pytest.approx([h.score for h in w], abs=1e-5)
            assert [h.rank for h in g] == list(range(1, len(g) + 1))
            assert all(where.accepts(h.camera, h.timestamp, h.vehicle_id) for h in g)
            if g:
                assert {**g[0].to_dict(), "score": 0} == {**w[0].to_dict(), "score": 0}
    # Exact hits of stored vectors, and the filters really cut: the window drops items without a timestamp.
    top = milvus_idx.search(vecs[:3], 1)
    assert [h[0].image_id for h in top] == [0, 1, 2] and top[0][0].score == pytest.approx(1.0, abs=1e-5)
    window = milvus_idx.search(queries[:1], 60, since="00001000")[0]
    assert len(window) == sum(1 for it in _items(60) if it.timestamp is not None)
    assert milvus_idx.search(queries[:1], 60, camera=9) == [[]]
    assert sorted(h.image_id for h in milvus_idx.search(queries[:1], 60, vehicle_id=4)[0]) == [12, 13, 14]
    with pytest.raises(PganError, match="time window is empty"):
        milvus_idx.search(queries, 3, since="2", until="1")


def test_filter_expressions_compare_numbers_and_malformed_times_are_refused():
    assert filter_expression(SearchFilter()) == ""
    assert filter_expression(SearchFilter.parse(camera=3, since="00030000", vehicle_id=7)) == \
        f"camera == 3 and vehicle_id == 7 and ts != {-(2**62)} and ts >= 30000"
    assert SearchFilter.parse(until="1970-01-02T00:00").until == 86400
    with pytest.raises(PganError, match="since 'a\"b' is not a time"):
        SearchFilter.parse(since='a"b')


def test_info_reopen_add_and_a_reader_seeing_the_writers_rows(tmp_path):
    uri = str(tmp_path / "lite" / "g.db")  # its folder is made
    writer = _filled(tmp_path / "idx", _unit(20, 0), backend="milvus", uri=uri)
    info = writer.info()
    assert info["backend"] == "milvus" and info["uri"] == uri and info["collection"] == "pgan_idx"
    assert info["searchable"] == info["size"] == 20 and info["complete"] and "vectors_problem" not in info
    reader = GalleryIndex.open(tmp_path / "idx")
    assert reader.backend == "milvus" and reader.searchable() == 20
    assert reader.refresh() is False  # nothing new
    new = _unit(5, 7)
    writer.add_batch([GalleryItem(f"/g/new{i}.jpg", camera=1, timestamp="00009999") for i in range(5)], new)
    assert writer.finalize() == 25
    assert reader.refresh() is True and reader.searchable() == 25
    hit = reader.search(new[2], 1, camera=1, since="00009000")[0][0]
    assert hit.path == "/g/new2.jpg" and hit.score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(PganError, match="keeps its vectors in milvus"):
        reader.vectors()
    reader.close()
    writer.close()


def test_a_failed_write_commits_nothing_and_removed_items_are_never_returned(tmp_path, monkeypatch):
    idx = GalleryIndex.create(tmp_path / "idx", DIM, "fp-test", "model.pt", "HNSW32", backend="milvus",
                              uri=str(tmp_path / "g.db"))
    vecs = _unit(12, 0)
    idx.add_batch(_items(10), vecs[:10])
    real_upsert = idx.vector_store.client.upsert

    def dying(*args, **kwargs):
        raise KeyboardInterrupt  # killed while writing to Milvus

    monkeypatch.setattr(idx.vector_store.client, "upsert", dying)
    with pytest.raises(KeyboardInterrupt):
        idx.add_batch([GalleryItem("/g/extra0.jpg"), GalleryItem("/g/extra1.jpg")], vecs[10:])
    assert len(idx) == 10 and "/g/extra0.jpg" not in idx.paths()  # the rows rolled back with it
    monkeypatch.setattr(idx.vector_store.client, "upsert", real_upsert)
    assert idx.add_batch([GalleryItem("/g/extra0.jpg"), GalleryItem("/g/extra1.jpg")], vecs[10:]) == [10, 11]
    assert idx.finalize() == 12
    assert [h[0].image_id for h in idx.search(vecs, 1)] == list(range(12))
    assert idx.remove(ids=[3], paths=["/g/img5.jpg"]) == [3, 5]
    with pytest.raises(PganError, match="no item with id 3; nothing was removed"):
        idx.remove(ids=[4, 3])
    assert len(idx) == 10
    found = {h.image_id for h in idx.search(vecs, 12)[0]}
    assert found == set(range(12)) - {3, 5}
    np.testing.assert_allclose(idx.vector(7), vecs[7], atol=1e-6)
    idx.close()


def test_another_model_or_index_never_takes_over_a_collection(tmp_path):
    uri = str(tmp_path / "g.db")
    first = _filled(tmp_path / "a", _unit(12, 0), backend="milvus", uri=uri, collection="shared")
    first.close()
    with pytest.raises(IndexMismatchError, match="model fp-test.*choose another --collection") as exc:
        GalleryIndex.create(tmp_path / "b", DIM, "fp-other", "other.pt", "HNSW32", backend="milvus", uri=uri,
                            collection="shared")
    assert "\n" not in str(exc.value)
    with pytest.raises(IndexMismatchError, match="16-d"):
        GalleryIndex.create(tmp_path / "b", 8, "fp-test", "model.pt", "HNSW32", backend="milvus", uri=uri,
                            collection="shared")
    with pytest.raises(StaleVectorsError, match="belongs to another index"):
        GalleryIndex.create(tmp_path / "b", DIM, "fp-test", "model.pt", "HNSW32", backend="milvus", uri=uri,
                            collection="shared")
    assert not (tmp_path / "b").exists()  # refused before anything was written
    again = GalleryIndex.open(tmp_path / "a")
    assert again.info()["searchable"] == 12 and again.search(_unit(1, 0), 1)[0][0].image_id == 0
    again.close()
    # A database rebuilt in the first folder is another index: the old collection stays as it was.
    (tmp_path / "a" / DB_NAME).unlink()
    with pytest.raises(StaleVectorsError, match="belongs to another index"):
        GalleryIndex.create(tmp_path / "a", DIM, "fp-test", "model.pt", "HNSW32", backend="milvus", uri=uri,
                            collection="shared")


def test_bad_settings_are_one_line_errors_that_write_nothing(tmp_path, monkeypatch):
    def create(name, **kw):
        return GalleryIndex.create(tmp_path / name, DIM, "fp-test", "model.pt", "HNSW32", **kw)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    cases = [
        (dict(backend="milvus"), "--backend milvus needs --uri"),
        (dict(backend="milvus", uri=f"http://127.0.0.1:{port}"), f"cannot reach the Milvus server http://127.0.0.1:{port}"),
        (dict(backend="milvus", uri=str(tmp_path / "gallery")), "neither a Milvus server"),
        (dict(backend="milvus", uri=str(tmp_path / "g.db"), collection="1 bad"), "not a Milvus collection name"),
        (dict(uri=str(tmp_path / "g.db")), "settings of '--backend milvus'"),
        (dict(backend="annoy"), "unknown vector backend"),
    ]
    for kw, message in cases:
        with pytest.raises(PganError, match=message) as exc:
            create("idx", **kw)
        assert "\n" not in str(exc.value)
        assert not (tmp_path / "idx").exists(), kw
    with pytest.raises(PganError, match="index type 'IVF64,PQ8'"):
        GalleryIndex.create(tmp_path / "idx", DIM, "fp", "m.pt", "IVF64,PQ8", backend="milvus", uri="g.db")
    assert not (tmp_path / "idx").exists()
    # pymilvus missing: the error names the extra to install.
    monkeypatch.setitem(sys.modules, "pymilvus", None)
    with pytest.raises(PganError, match=r"pip install 'pgan\[milvus\]'"):
        create("idx", backend="milvus", uri=str(tmp_path / "g.db"))
    assert not (tmp_path / "idx").exists()


def test_a_resumed_index_keeps_its_backend_and_collection(tmp_path):
    uri = str(tmp_path / "g.db")
    _filled(tmp_path / "m", _unit(4, 0), "HNSW32", backend="milvus", uri=uri).close()
    _filled(tmp_path / "f", _unit(4, 0)).close()
    reopened = GalleryIndex.create(tmp_path / "m", DIM, "fp-test", "model.pt", "HNSW32")  # backend: its own
    assert reopened.backend == "milvus"
    reopened.close()
    for path, kw, message in [
        ("m", dict(backend="faiss"), "keeps its vectors in milvus, not faiss"),
        ("m", dict(uri=str(tmp_path / "other.db")), "--uri"),
        ("m", dict(collection="elsewhere"), "--collection"),
        ("f", dict(backend="milvus", uri=uri), "keeps its vectors in faiss"),
    ]:
        kind = "HNSW32" if path == "m" else "Flat"
        with pytest.raises(PganError, match=message):
            GalleryIndex.create(tmp_path / path, DIM, "fp-test", "model.pt", kind, **kw)


# --- build_index and the CLI through a stand-in model --------------------------------------------------
class HashExtractor:
    """A model stand-in: each image's embedding is a unit vector seeded by its pixels (an image finds
    itself first); ``fail_after`` batches it raises, as a killed build."""

    embedding_dim, model_fingerprint, parts_arg, runtime, flip = DIM, "fp-hash", None, "torch", False

    def __init__(self, fingerprint: str = "fp-hash", fail_after: int | None = None) -> None:
        self.model_fingerprint, self.fail_after, self.embedded, self.batches = fingerprint, fail_after, 0, 0
        self.checkpoint = Path("hash.pt").resolve()

    def extract_with_parts(self, images):
        if self.fail_after is not None and self.batches >= self.fail_after:
            raise KeyboardInterrupt
        self.batches += 1
        self.embedded += len(images)
        seeds = [int(hashlib.sha1(np.asarray(im.rgb).tobytes()).hexdigest()[:8], 16) for im in images]
        return np.concatenate([_unit(1, s) for s in seeds]), [[] for _ in images]


def _photos(folder: Path, n: int, start: int = 0) -> list[Path]:
    """VeRi-style names: vehicle, camera (1-3), timestamp."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"{i // 2:04d}_c{i % 3 + 1:03d}_{100 * i:08d}_1.png"
        Image.new("RGB", (8, 8), ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256)).save(p)
        out.append(p)
    return out


def test_build_resume_add_and_search_through_build_index(tmp_path):
    files = _photos(tmp_path / "gallery", 12)
    uri = str(tmp_path / "g.db")
    killed = HashExtractor(fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        build_index(tmp_path / "gallery", tmp_path / "idx", extractor=killed, batch_size=4, progress=False,
                    backend="milvus", uri=uri)
    with GalleryIndex.open(tmp_path / "idx") as partial:
        assert len(partial) == 8
        assert len(partial.search(_unit(1, 0), 20)[0]) == 8  # every committed batch is searchable
    again = HashExtractor()
    report = build_index(tmp_path / "gallery", tmp_path / "idx", extractor=again, batch_size=4, progress=False)
    assert (report.already, report.added, again.embedded, report.index_type) == (8, 4, 4, "HNSW32")
    fx = HashExtractor()
    more = _photos(tmp_path / "more", 3, start=12)
    assert add_to_index(tmp_path / "idx", tmp_path / "more", extractor=fx, progress=False).added == 3
    with GalleryIndex.open(tmp_path / "idx") as idx:
        assert idx.info()["complete"] and idx.searchable() == 15
        emb, _ = fx.extract_with_parts([decode(p) for p in files + more])
        assert [h[0].path for h in idx.search(emb, 1)] == [str(p.resolve()) for p in files + more]
        cam2 = idx.search(emb[:1], 15, camera=2, since="00000300", until="00001100")[0]
        assert {h.camera for h in cam2} == {2} and [h.timestamp for h in cam2] and \
            all("00000300" <= h.timestamp <= "00001100" for h in cam2)
        assert len(cam2) == sum(1 for i in range(15) if i % 3 == 1 and 3 <= i <= 11)
    with pytest.raises(IndexMismatchError, match="built with model"):
        add_to_index(tmp_path / "idx", tmp_path / "more", extractor=HashExtractor("fp-other"), progress=False)


def test_cli_info_and_settings_checked_before_the_model_loads(run_cli, tmp_path, capsys):
    _filled(tmp_path / "idx", _unit(10, 0), backend="milvus", uri=str(tmp_path / "g.db")).close()
    assert run_cli("index", "info", "--index", tmp_path / "idx") == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["backend"], info["collection"], info["searchable"]) == ("milvus", "pgan_idx", 10)
    _photos(tmp_path / "gallery", 2)
    build = ("index", "build", "--checkpoint", tmp_path / "missing.pt", "--images", tmp_path / "gallery",
             "--out", tmp_path / "new", "--backend", "milvus")
    for extra, message in [((), "--backend milvus needs --uri"), (("--uri", "x.txt"), "neither a Milvus server"),
                           (("--uri", "g.db", "--index-type", "IVF64,PQ8"), "not one the milvus backend")]:
        assert run_cli(*build, *extra) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("pgan: error:") and message in err and "\n" not in err, err
    assert not (tmp_path / "new").exists()


@pytest.mark.slow
def test_cli_build_search_and_serve_with_a_real_model(run_cli, tiny_synth, tiny_checkpoint, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from pgan.serve import ServeSettings, create_app, load_service

    ckpt, gallery, idx = tiny_checkpoint("pgan"), tiny_synth / "image_test", tmp_path / "idx"
    assert run_cli("index", "build", "--checkpoint", ckpt, "--images", gallery, "--out", idx, "--quiet",
                   "--device", "cpu", "--backend", "milvus", "--uri", tmp_path / "g.db") == 0
    assert json.loads(capsys.readouterr().out)["index_type"] == "HNSW32"
    q = sorted(gallery.iterdir())[5]
    cam, ts = int(q.name[6:9]), q.name.split("_")[2]
    assert run_cli("search", "--index", idx, q, "--top-k", "16", "--camera", cam, "--since", ts, "--device",
                   "cpu") == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["path"] == str(q.resolve()) and rows[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert all(r["camera"] == cam and r["timestamp"] >= ts for r in rows)
    assert len(rows) == sum(1 for f in gallery.iterdir() if f.name[6:9] == q.name[6:9] and
                            f.name.split("_")[2] >= ts)
    index, extractor = load_service(idx, device="cpu")
    with TestClient(create_app(index, extractor, ServeSettings())) as client:
        assert client.get("/api/info").json()["gallery_size"] == 16
        r = client.post("/api/search", files={"image": (q.name, q.read_bytes(), "image/jpeg")}, data={"topk": "3"})
        assert r.status_code == 200 and r.json()["results"][0]["name"] == q.name
    index.close()


# --- milvus-lite server over http: the client path of a Milvus standalone or cluster ------------------
@pytest.fixture
def lite_server(tmp_path):
    """``milvus-lite server`` on 127.0.0.1 at a free port; yields its http URI; stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "srv"),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = proc.stdout.read()[-2000:]
                    raise RuntimeError(f"milvus-lite server did not start: {tail!r}") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_a_server_over_http_serves_a_writer_and_a_reader(tmp_path, lite_server):
    vecs = _unit(30, 0)
    faiss_idx = _filled(tmp_path / "faiss", vecs)
    writer = _filled(tmp_path / "idx", vecs, backend="milvus", uri=lite_server)
    reader = GalleryIndex.open(tmp_path / "idx")
    assert reader.info()["uri"] == lite_server and reader.searchable() == 30
    q = _unit(4, 1)
    for where in FILTERS:
        args = dict(camera=where.camera, exclude_camera=where.exclude_camera, since=where.since, until=where.until,
                    vehicle_id=where.vehicle_id)
        assert [[h.image_id for h in r] for r in reader.search(q, 6, **args)] == \
            [[h.image_id for h in r] for r in faiss_idx.search(q, 6, **args)], where
    writer.add_batch([GalleryItem("/g/late.jpg", camera=0)], _unit(1, 99))
    writer.finalize()
    assert reader.refresh() and reader.searchable() == 31
    with pytest.raises(IndexMismatchError, match="choose another --collection"):
        GalleryIndex.create(tmp_path / "other", DIM, "fp-other", "m.pt", "HNSW32", backend="milvus",
                            uri=lite_server, collection="pgan_idx")
    reader.close()
    writer.close()
