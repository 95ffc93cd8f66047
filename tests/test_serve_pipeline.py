"""Where the service's work runs (fakes, fast): decoding and part boxes on the ``pgan-prep`` pool, the
network alone on ``pgan-inference``, the index on ``pgan-index``; reduced JPEG decoding with boxes in full
pixels; the bounded queue on this path; thumbnails at fixed sizes from a bounded LRU."""

from __future__ import annotations

import concurrent.futures as cf
import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pgan.errors import PganError
from pgan.parts.boxfile import PartBox
from pgan.serve import ServeSettings, create_app, pipeline
from pgan.serve.thumbnails import ThumbnailCache
from pgan.serve.uploads import decode_upload_reduced
from serve_helpers import COLOURS, FakeExtractor, FakeIndex


class SplitExtractor(FakeExtractor):
    """A fake with the FeatureExtractor's split: ``prepare`` (mean colour, boxes) and ``embed_prepared``;
    records the thread each step ran on."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: dict[str, set[str]] = {"prepare": set(), "embed": set()}
        self.gate: threading.Event | None = None  # when set, the network waits for it
        self.entered = threading.Event()

    def prepare(self, images):
        self.threads["prepare"].add(threading.current_thread().name)
        rgb = [np.asarray(im.convert("RGB"), dtype=np.float32) for im in images]
        x = np.stack([a.reshape(-1, 3).mean(0) / 255.0 for a in rgb])[:, :, None, None]
        boxes = [[PartBox(1, 2, a.shape[1] / 2, a.shape[0] / 2, 0.9, "light")] for a in rgb]
        return x.astype(np.float32), None, boxes

    def embed_prepared(self, images, masks):
        self.threads["embed"].add(threading.current_thread().name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(60)
        self.calls.append(len(images))
        v = np.concatenate([images[:, :, 0, 0], np.full((len(images), 1), 0.05, np.float32)], axis=1)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def _jpeg(colour=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _upload(client, data: bytes):
    return client.post("/api/search", files={"image": ("q.jpg", data, "image/jpeg")}, data={"topk": "3"})


@pytest.fixture
def gallery(tmp_path):
    return FakeIndex(tmp_path / "gallery")


def test_decoding_and_parts_run_on_the_prep_pool_the_network_alone_on_the_inference_thread(gallery,
                                                                                            monkeypatch):
    decoded_on, searched_on = set(), set()
    real_decode, real_search = pipeline.decode_upload_reduced, gallery.search

    def decode(*args):
        decoded_on.add(threading.current_thread().name)
        return real_decode(*args)

    def search(*args):
        searched_on.add(threading.current_thread().name)
        return real_search(*args)

    monkeypatch.setattr(pipeline, "decode_upload_reduced", decode)
    gallery.search = search
    extractor = SplitExtractor()
    with TestClient(create_app(gallery, extractor, ServeSettings(prep_threads=2))) as client:
        for i in range(6):
            r = _upload(client, _jpeg(COLOURS[i]))
            assert r.status_code == 200, r.text
            assert r.json()["results"][0]["vehicle_id"] == i  # the prepared path ranks as before
    assert decoded_on and all(name.startswith("pgan-prep") for name in decoded_on)
    assert extractor.threads["prepare"] and all(n.startswith("pgan-prep") for n in extractor.threads["prepare"])
    assert extractor.threads["embed"] == {"pgan-inference"}
    assert searched_on == {"pgan-index_0"}  # the one index thread
    assert sum(extractor.calls) == 7  # 6 queries and the warm-up, all through embed_prepared


def test_a_large_jpeg_decodes_reduced_and_its_boxes_come_back_in_full_pixels(gallery):
    data = _jpeg(COLOURS[2], (2000, 1000))
    img, full = decode_upload_reduced(data, ServeSettings(), draft=256)
    assert full == (2000, 1000) and img.size == (1000, 500)  # 1/2: 1/4 would leave a side below 256
    assert decode_upload_reduced(data, ServeSettings(), draft=0)[0].size == (2000, 1000)
    extractor = SplitExtractor()
    with TestClient(create_app(gallery, extractor, ServeSettings(decode_side=256))) as client:
        body = _upload(client, data).json()
    assert (body["query"]["width"], body["query"]["height"]) == (2000, 1000)
    box = body["query"]["boxes"][0]  # the fake boxes the reduced image's top-left quarter
    assert (box["x1"], box["y1"], box["x2"], box["y2"]) == (2, 4, 1000, 500)
    assert body["results"][0]["vehicle_id"] == 2


def test_the_queue_stays_bounded_when_queries_are_prepared_off_the_inference_thread(gallery):
    extractor = SplitExtractor()
    extractor.gate = threading.Event()
    app = create_app(gallery, extractor, ServeSettings(max_queue=3, max_batch=1, warmup=False))
    with TestClient(app) as client, cf.ThreadPoolExecutor(6) as pool:
        try:
            first = pool.submit(_upload, client, _jpeg())
            assert extractor.entered.wait(30)  # the network is busy with the first query
            rest = [pool.submit(_upload, client, _jpeg(COLOURS[i % 6])) for i in range(5)]
            for _ in range(300):  # bounded: 2 more are admitted, 3 refused at once
                if sum(f.done() for f in rest) >= 3:
                    break
                time.sleep(0.1)
            refused = [f.result() for f in rest if f.done()]
        finally:
            extractor.gate.set()
        answered = [first.result(60)] + [f.result(60) for f in rest if f.result(60) not in refused]
    assert len(refused) == 3 and all(r.status_code == 503 and r.headers["retry-after"] == "1" for r in refused)
    assert all("busy" in r.json()["error"] for r in refused)
    assert len(answered) == 3 and all(r.status_code == 200 for r in answered)


def test_corrupt_uploads_are_400_on_the_prepared_path(gallery):
    with TestClient(create_app(gallery, SplitExtractor(), ServeSettings())) as client:
        r = _upload(client, _jpeg()[:40])
        assert r.status_code == 400 and "corrupt or truncated" in r.json()["error"]
        assert _upload(client, _jpeg()).status_code == 200  # and the server goes on


def test_thumbnails_snap_to_fixed_sizes_and_come_from_the_cache_the_second_time(gallery, monkeypatch):
    from pgan.serve import app as app_module

    big = gallery.paths[100].with_suffix(".jpg")
    Image.new("RGB", (600, 400), COLOURS[0]).save(big, format="JPEG")
    gallery.paths[100] = big
    made = []
    real_load = app_module.load_gallery_image
    monkeypatch.setattr(app_module, "load_gallery_image", lambda *a, **k: made.append(a[0]) or real_load(*a, **k))
    settings = ServeSettings(thumbnail_sizes=(64, 128, 256))
    assert [settings.thumbnail_side(n) for n in (16, 64, 65, 128, 200, 1000)] == [64, 64, 128, 128, 256, 256]
    with TestClient(create_app(gallery, FakeExtractor(), settings)) as client:
        first = client.get("/api/images/100?size=100")
        assert first.status_code == 200 and first.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(first.content)).size == (128, 85)  # served at 128, aspect kept
        assert len(made) == 1
        again = client.get("/api/images/100?size=120")  # snaps to the same 128: the cached bytes
        assert again.content == first.content and len(made) == 1
        assert max(Image.open(io.BytesIO(client.get("/api/images/100?size=129").content)).size) == 256
        assert len(made) == 2
        stats = client.get("/api/info").json()["inference"]
        assert stats["thumbnail_hits"] == 1 and stats["thumbnail_misses"] == 2


def test_the_thumbnail_cache_is_a_bounded_lru():
    cache = ThumbnailCache(max_bytes=10)
    cache.put((1, 64), b"aaaa")
    cache.put((2, 64), b"bbbb")
    assert cache.get((1, 64)) == b"aaaa"  # 1 is now the most recently used
    cache.put((3, 64), b"cccc")  # 12 bytes > 10: the least recently used (2) goes
    assert cache.get((2, 64)) is None and cache.get((1, 64)) == b"aaaa" and cache.get((3, 64)) == b"cccc"
    assert cache.nbytes == 8 and len(cache) == 2
    cache.put((4, 64), b"x" * 11)  # larger than the whole budget: returned, not kept
    assert cache.get((4, 64)) is None and cache.nbytes == 8
    assert (cache.hits, cache.misses) == (3, 2)


def test_new_settings_are_validated():
    with pytest.raises(PganError, match="prep_threads"):
        ServeSettings(prep_threads=0)
    with pytest.raises(PganError, match="thumbnail_sizes"):
        ServeSettings(thumbnail_sizes=(8,))
    with pytest.raises(PganError, match="decode_side"):
        ServeSettings(decode_side=-1)


def test_image_sizes_are_cached_within_a_bound_oldest_first():
    from pgan.serve.thumbnails import UNKNOWN, ImageSizes

    sizes = ImageSizes(max_items=3)
    assert sizes.get(1) is UNKNOWN
    assert sizes.put(1, (640, 480)) == (640, 480) and sizes.put(2, None) is None  # None: unreadable, cached
    assert sizes.get(1) == (640, 480) and sizes.get(2) is None
    for i in range(3, 10):
        sizes.put(i, (i, i))
    assert len(sizes) == 3  # a long-running service over a large gallery does not grow without bound
    assert sizes.get(1) is UNKNOWN and sizes.get(2) is UNKNOWN and sizes.get(9) == (9, 9)
