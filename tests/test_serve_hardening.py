"""The service's hardening, against the small fakes: Host check, security headers, typed images, a bounded
queue, health of the inference thread, 503 for the server's own state, searches by id from stored vectors."""

from __future__ import annotations

import concurrent.futures as cf
import io
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pgan.errors import PganError
from pgan.serve import ServeSettings, create_app
from pgan.serve.server import trusted_hosts
from serve_helpers import COLOURS, FakeExtractor, FakeIndex


def _png(colour=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _upload(client, colour=COLOURS[0]):
    return client.post("/api/search", files={"image": ("q.png", _png(colour), "image/png")}, data={"topk": "3"})


@pytest.fixture
def gallery(tmp_path):
    return FakeIndex(tmp_path / "gallery")


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_a_foreign_host_header_is_refused_on_a_loopback_bind(gallery):
    assert trusted_hosts("127.0.0.1") == ("127.0.0.1", "localhost", "[::1]")
    assert trusted_hosts("::1") == ("127.0.0.1", "localhost", "[::1]")
    settings = ServeSettings(allowed_hosts=trusted_hosts("127.0.0.1"))
    with TestClient(create_app(gallery, FakeExtractor(), settings), base_url="http://127.0.0.1:8000") as client:
        assert client.get("/api/health").status_code == 200
        for host in ("localhost:8000", "[::1]:8000", "127.0.0.1"):
            assert client.get("/api/health", headers={"Host": host}).status_code == 200
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", "attacker.localhost"):
            r = client.get("/api/images/100", headers={"Host": host})  # a DNS-rebound page reading the gallery
            assert r.status_code == 400 and r.text == "Invalid host header", host
            assert r.headers["x-content-type-options"] == "nosniff"
        r = client.post("/api/search", data={"image_id": "100"}, headers={"Host": "evil.example"})
        assert r.status_code == 400


def test_every_response_says_nosniff_and_the_page_has_a_content_security_policy(gallery):
    with TestClient(create_app(gallery, FakeExtractor(), ServeSettings(max_upload_bytes=1000))) as client:
        responses = [client.get("/"), client.get("/api/health"), client.get("/api/info"),
                     client.get("/api/images/100"), client.get("/api/images/100?size=16"),
                     client.get("/static/app.js"), client.get("/api/images/99999"),
                     client.post("/api/search", data={"topk": "x"}),
                     client.post("/api/search", files={"image": ("q.png", b"x" * 200_000, "image/png")})]
        assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 404, 422, 413]
        assert all(r.headers["x-content-type-options"] == "nosniff" for r in responses)
        csp = responses[0].headers["content-security-policy"]
        assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
        assert "img-src 'self' blob: data:" in csp and "frame-ancestors 'none'" in csp


def test_gallery_images_are_typed_from_their_decoded_format_not_their_name(gallery):
    png_named_jpg = gallery.paths[104].with_name("looks_like.jpg")
    gallery.paths[104].rename(png_named_jpg)
    gallery.paths[104] = png_named_jpg
    html = gallery.paths[105].with_name("page.png")
    html.write_text("<html><script>alert(1)</script></html>")  # an HTML file named .png in the gallery
    gallery.paths[105] = html
    with TestClient(create_app(gallery, FakeExtractor(), ServeSettings())) as client:
        r = client.get("/api/images/104")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == png_named_jpg.read_bytes()
        assert "not a readable image" in _error(client.get("/api/images/105"), 404)


def test_a_full_queue_answers_503_at_once(gallery):
    entered, gate = threading.Event(), threading.Event()

    class Slow(FakeExtractor):
        def extract_with_parts(self, images):
            entered.set()
            assert gate.wait(60)
            return super().extract_with_parts(images)

    app = create_app(gallery, Slow(), ServeSettings(max_queue=3, max_batch=1, warmup=False))
    with TestClient(app) as client, cf.ThreadPoolExecutor(6) as pool:
        try:
            first = pool.submit(_upload, client)
            assert entered.wait(30)  # the inference thread is busy with the first query
            rest = [pool.submit(_upload, client, COLOURS[i % 6]) for i in range(5)]
            for _ in range(300):  # bounded: 2 more are admitted (3 in progress), 3 are refused without waiting
                if sum(f.done() for f in rest) >= 3:
                    break
                time.sleep(0.1)
            refused = [f.result() for f in rest if f.done()]
        finally:
            gate.set()
        answered = [first.result(60)] + [f.result(60) for f in rest if f.result(60) not in refused]
        assert len(refused) == 3 and len(answered) == 3
        for r in refused:
            assert "busy (3 requests in progress)" in _error(r, 503) and r.headers["retry-after"] == "1"
        assert all(r.status_code == 200 for r in answered)
        info = client.get("/api/info").json()
        assert info["inference"]["refused"] == 3 and info["inference"]["max_queue"] == 3
        assert info["inference"]["in_progress"] == 0


def test_health_reports_a_stopped_inference_thread_and_searches_get_503(gallery):
    app = create_app(gallery, FakeExtractor(), ServeSettings())
    with TestClient(app) as client:
        assert client.get("/api/health").json()["worker_alive"] is True
        app.state.pgan.worker.stop()
        r = client.get("/api/health")
        assert r.status_code == 503 and r.json() == {"status": "inference thread stopped", "gallery_size": 0,
                                                     "worker_alive": False}
        assert "inference thread is not running" in _error(_upload(client), 503)


def test_server_state_failures_are_503_and_bad_input_stays_4xx(gallery):
    def broken(*args, **kwargs):
        raise PganError("index /x has no vectors.faiss yet: its build was interrupted")

    gallery.search = broken
    with TestClient(create_app(gallery, FakeExtractor(), ServeSettings())) as client:
        assert "build was interrupted" in _error(_upload(client), 503)
        assert "not an image" in _error(client.post("/api/search", files={"image": ("q.png", b"no", "image/png")}),
                                        400)
        assert "topk" in _error(client.post("/api/search", data={"image_id": "100", "topk": "0"}), 422)


def test_search_by_gallery_id_uses_the_stored_vector_not_a_re_embedding(gallery):
    extractor = FakeExtractor()
    gallery.vectors[103] = gallery.vectors[101]  # stored vector of 103: colour 1; its pixels are colour 3
    with TestClient(create_app(gallery, extractor, ServeSettings())) as client:
        calls = list(extractor.calls)
        body = client.post("/api/search", data={"image_id": "103", "topk": "4"}).json()
        assert extractor.calls == calls  # nothing embedded
        # What the stored vector finds: the colour-1 images (and 103, which now stores their vector); a
        # re-embedding of 103's pixels would have found 103 and 109, the other colour-3 image.
        assert {h["image_id"] for h in body["results"][:3]} == {101, 103, 107}
        assert body["query"]["image_id"] == 103 and (body["query"]["width"], body["query"]["height"]) == (32, 24)
        assert body["query"]["boxes"][0]["label"] == "logo"  # the stored boxes
