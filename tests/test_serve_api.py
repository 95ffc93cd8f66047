"""The HTTP API against small fakes of the index and the extractor: every endpoint, every bad input."""

from __future__ import annotations

import io
import re
import struct
import zlib

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pgan.errors import PganError
from pgan.serve import ServeSettings, create_app
from serve_helpers import COLOURS, FakeExtractor, FakeIndex


def _png(colour=(200, 30, 30), size=(32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels, with almost no data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + b"\x00" * 3 * 16
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b"")


@pytest.fixture
def gallery(tmp_path):
    return FakeIndex(tmp_path / "gallery")


def _client(gallery, **settings):
    extractor = FakeExtractor()
    app = create_app(gallery, extractor, ServeSettings(**{"max_topk": 20, **settings}))
    return TestClient(app), extractor


@pytest.fixture
def client(gallery):
    client, _ = _client(gallery)
    with client:
        yield client


def _error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"]
    return body["error"]


def test_health_info_and_page(client, gallery):
    assert client.get("/api/health").json() == {"status": "ok", "gallery_size": 12, "worker_alive": True}
    info = client.get("/api/info").json()
    assert info["gallery_size"] == 12 and info["embedding_dim"] == 4 and info["index_type"] == "Flat"
    assert info["checkpoint"] == "fake.pt"  # the file name only, never the server's folders
    assert info["limits"]["max_topk"] == 20
    assert info["inference"]["images"] >= 1  # the warm-up query ran in the lifespan
    assert info["upload_parts"] == "none" and info["upload_parts_fallback"] is False and info["warnings"] == []
    page = client.get("/")
    assert page.status_code == 200 and "<title>pgan search</title>" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert refs and all(ref.startswith("/static/") for ref in refs)  # no CDN: the page works offline
    assert "/api/search" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


def test_search_upload_ranks_same_colour_first(client):
    r = client.post("/api/search", files={"image": ("q.png", _png(COLOURS[2]), "image/png")}, data={"topk": "5"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["query"] == {"image_id": None, "width": 32, "height": 24,
                             "boxes": [{"x1": 1.0, "y1": 2.0, "x2": 16.0, "y2": 12.0, "score": 0.9,
                                        "label": "light"}]}
    results = body["results"]
    assert [h["rank"] for h in results] == [1, 2, 3, 4, 5]
    assert results[0]["vehicle_id"] == 2 and results[1]["vehicle_id"] == 2  # both images of colour 2
    assert results[0]["score"] >= results[1]["score"] >= results[4]["score"]
    assert results[0]["width"] == 32 and results[0]["height"] == 24
    assert results[0]["boxes"][0]["label"] == "logo"
    assert "path" not in results[0] and "/" not in results[0]["name"]  # no server paths leak


def test_search_by_gallery_id_camera_filter_and_topk_default(client):
    body = client.post("/api/search", data={"image_id": "103"}).json()
    assert body["query"]["image_id"] == 103
    assert body["results"][0]["image_id"] == 103 and body["results"][0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert len(body["results"]) == 10  # default_topk
    only = client.post("/api/search", data={"image_id": "103", "camera": "1", "topk": "20"}).json()["results"]
    assert only and all(h["camera"] == 1 for h in only) and len(only) == 4
    assert len(client.post("/api/search", data={"image_id": "100", "topk": "20"}).json()["results"]) == 12


def test_gallery_images_and_thumbnails(client, gallery):
    r = client.get("/api/images/104")
    assert r.status_code == 200 and r.content == gallery.paths[104].read_bytes()
    assert r.headers["content-type"] == "image/png"
    t = client.get("/api/images/104?size=16")
    assert t.status_code == 200 and t.headers["content-type"] == "image/jpeg"
    # ?size=16 is served at the smallest fixed size, 64, and a thumbnail never enlarges the 32x24 file.
    assert Image.open(io.BytesIO(t.content)).size == (32, 24)


@pytest.mark.parametrize("path", ["/api/images/..%2F..%2Fetc%2Fpasswd", "/api/images/%2E%2E",
                                  "/api/images/-1", "/api/images/1e3", "/api/images/abc"])
def test_path_traversal_and_non_integer_ids_never_reach_the_file_system(client, path):
    r = client.get(path)
    assert r.status_code in (404, 422) and "root:" not in r.text
    _error(r, r.status_code)


def test_unknown_ids_and_bad_sizes(client):
    assert "not in the gallery" in _error(client.get("/api/images/99999"), 404)
    assert "not in the gallery" in _error(client.post("/api/search", data={"image_id": "7"}), 404)
    assert "image_id" in _error(client.post("/api/search", data={"image_id": "../../etc/passwd"}), 422)
    assert "size" in _error(client.get("/api/images/100?size=0"), 422)
    assert "size" in _error(client.get("/api/images/100?size=100000"), 422)
    _error(client.get("/api/nothing-here"), 404)


def test_missing_gallery_file_is_a_404(client, gallery):
    gallery.paths[105].unlink()
    assert "missing" in _error(client.get("/api/images/105"), 404)


@pytest.mark.parametrize("topk,fragment", [("0", "between 1 and 20"), ("-3", "between 1 and 20"),
                                           ("21", "between 1 and 20"), ("10**9", "integer"),
                                           ("99999999999999999999", "between")])
def test_bad_topk(client, topk, fragment):
    r = client.post("/api/search", files={"image": ("q.png", _png(), "image/png")}, data={"topk": topk})
    assert fragment in _error(r, 422)


@pytest.mark.parametrize("payload,status,fragment", [
    (b"", 400, "empty"),
    (b"this is not an image at all", 400, "not an image"),
    (_png()[:60], 400, "corrupt"),  # truncated PNG
    (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", 400, "not an image"),  # EPS: decoder not allowed
])
def test_bad_uploads(client, payload, status, fragment):
    r = client.post("/api/search", files={"image": ("q.png", payload, "image/png")})
    assert fragment in _error(r, status)
    assert client.get("/api/health").status_code == 200  # the server stays up


def test_decompression_bomb_is_refused_from_the_header(client):
    r = client.post("/api/search", files={"image": ("bomb.png", _bomb_png(6_000, 6_000), "image/png")})
    assert "36000000 pixels exceeds the limit of 25000000" in _error(r, 413)
    # Past PIL's own bomb threshold too (2 x 89 M pixels, checked inside Image.open): still a clean 413.
    r = client.post("/api/search", files={"image": ("bomb.png", _bomb_png(60_000, 60_000), "image/png")})
    assert "decompression bomb" in _error(r, 413)
    assert client.post("/api/search", data={"image_id": "100"}).status_code == 200


def test_upload_over_byte_limits(gallery):
    client, _ = _client(gallery, max_upload_bytes=1000, max_pixels=10_000)
    with client:
        big = _png(size=(40, 40))  # 1,600 pixels but compressed small: fine
        assert client.post("/api/search", files={"image": ("q.png", big, "image/png")}).status_code == 200
        noisy = io.BytesIO()
        Image.frombytes("RGB", (64, 64), bytes(range(256)) * 48).save(noisy, format="BMP")  # > 1,000 bytes
        r = client.post("/api/search", files={"image": ("q.bmp", noisy.getvalue(), "image/bmp")})
        assert "bytes" in _error(r, 413)
        r = client.post("/api/search", files={"image": ("q.png", b"x" * 200_000, "image/png")})
        assert "request body exceeds" in _error(r, 413)  # refused from Content-Length, before parsing
        boundary = "b0undary"
        def chunked():  # no Content-Length: counted while it arrives
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.png\"\r\n"
                   "Content-Type: image/png\r\n\r\n").encode()
            for _ in range(100):
                yield b"x" * 10_000
            yield f"\r\n--{boundary}--\r\n".encode()
        r = client.post("/api/search", content=chunked(),
                        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert "request body exceeds" in _error(r, 413)
        r = client.post("/api/search", files={"image": ("q.png", _png(size=(200, 100)), "image/png")})
        assert "20000 pixels exceeds the limit of 10000" in _error(r, 413)


def test_missing_or_conflicting_fields(client):
    assert "missing field 'image'" in _error(client.post("/api/search", data={"topk": "3"}), 422)
    r = client.post("/api/search", files={"image": ("q.png", _png(), "image/png")}, data={"image_id": "100"})
    assert "not both" in _error(r, 422)
    assert "camera" in _error(client.post("/api/search", data={"image_id": "100", "camera": "x"}), 422)
    _error(client.post("/api/search", data={"image": "not a file"}), 422)


def test_token_is_required_on_every_api_call(gallery):
    client, _ = _client(gallery, token="s3cret")
    with client:
        calls = [lambda h: client.get("/api/health", headers=h), lambda h: client.get("/api/info", headers=h),
                 lambda h: client.get("/api/images/100", headers=h),
                 lambda h: client.post("/api/search", data={"image_id": "100"}, headers=h)]
        for call in calls:
            assert "bearer token" in _error(call({}), 401)
            assert _error(call({"Authorization": "Bearer wrong"}), 401)
            assert _error(call({"Authorization": "Basic s3cret"}), 401)
            assert call({"Authorization": "Bearer s3cret"}).status_code == 200
        assert client.get("/api/health").headers["www-authenticate"] == "Bearer"
        assert client.get("/").status_code == 200  # the page itself asks for the token


def test_concurrent_queries_are_batched_on_one_thread(gallery):
    import concurrent.futures as cf

    client, extractor = _client(gallery, max_batch=4)
    with client:
        def one(i):
            return client.post("/api/search", files={"image": ("q.png", _png(COLOURS[i % 6]), "image/png")},
                               data={"topk": "3"})
        with cf.ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(one, range(32)))
    assert all(r.status_code == 200 for r in responses)
    for i, r in enumerate(responses):
        assert r.json()["results"][0]["vehicle_id"] == i % 6
    assert sum(extractor.calls) == 33 and max(extractor.calls) <= 4  # 32 queries + the warm-up


def test_settings_are_validated():
    with pytest.raises(PganError, match="max_topk"):
        ServeSettings(max_topk=0)
    with pytest.raises(PganError, match="default_topk"):
        ServeSettings(max_topk=5, default_topk=10)
    with pytest.raises(PganError, match="token"):
        ServeSettings(token="has space")
