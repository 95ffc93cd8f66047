"""The search routes' JSON, now plain dicts encoded once (pgan.serve.responses), against the pydantic path
they replaced (kept in benchmarks/serve_json.py): the same keys in the same order, the same values and
the same JSON types (a box coordinate stays a float, an id an integer); only took_ms differs."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench_helpers import load_benchmark
from pgan.index.records import Hit
from pgan.parts.boxfile import PartBox
from pgan.serve import ServeSettings, create_app, responses
from serve_helpers import FakeExtractor, FakeIndex

serve_json = load_benchmark("serve_json")


class RecordingIndex(FakeIndex):
    """The fake gallery, remembering the hits of its last search (what the legacy path is given)."""

    def search(self, embeddings, topk, camera=None):
        self.last = super().search(embeddings, topk, camera)
        return self.last


def same_json(new, old, where: str = "body") -> None:
    """``new == old`` with the same JSON types at every level and dict keys in the same order."""
    if isinstance(old, dict):
        assert isinstance(new, dict) and list(new) == list(old), f"{where}: keys {list(new)} != {list(old)}"
        for k in old:
            same_json(new[k], old[k], f"{where}.{k}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: lengths differ"
        for j, (a, b) in enumerate(zip(new, old)):
            same_json(a, b, f"{where}[{j}]")
    else:
        assert type(new) is type(old) and new == old, f"{where}: {new!r} != {old!r}"


@pytest.fixture
def gallery(tmp_path):
    g = RecordingIndex(tmp_path / "gallery")
    g.times = {100 + i: f"{(12 - i) * 10:08d}" for i in range(12) if i not in (5, 10)}
    return g


@pytest.fixture
def client(gallery):
    with TestClient(create_app(gallery, FakeExtractor(), ServeSettings(max_topk=20))) as c:
        yield c


def _size(path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _sizes(gallery, hits) -> list:
    return [_size(gallery.paths[h.image_id]) for h in hits]


@pytest.mark.parametrize("form", [{}, {"topk": "12", "group": "camera", "min_score": "0.9"},
                                  {"topk": "5", "camera": "1", "group": "camera"}])
def test_search_by_gallery_id_answers_the_legacy_json(client, gallery, form):
    r = client.post("/api/search", data={"image_id": "102", **form})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    query = gallery.get(102)
    width, height = _size(gallery.paths[102])
    min_score = float(form.get("min_score", 0.5)) if form.get("group") else None
    hits = gallery.last[0]
    old = serve_json.legacy_search_json(102, width, height, query.boxes, hits, _sizes(gallery, hits), 0.0,
                                        min_score)
    new, old = json.loads(r.content), json.loads(old)
    assert new.pop("took_ms") >= 0 and old.pop("took_ms") == 0
    same_json(new, old)
    assert (new["sightings"] is None) == (min_score is None)


def test_search_upload_answers_the_legacy_json(client, gallery):
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 200, 30)).save(buf, format="PNG")
    r = client.post("/api/search", files={"image": ("q.png", buf.getvalue(), "image/png")}, data={"topk": "4"})
    assert r.status_code == 200, r.text
    new = json.loads(r.content)
    hits = gallery.last[0]
    old = json.loads(serve_json.legacy_search_json(
        None, 64, 48, [PartBox(1, 2, 32, 24, 0.9, "light")], hits, _sizes(gallery, hits), 0.0))
    new.pop("took_ms"), old.pop("took_ms")
    same_json(new, old)


def test_batch_routes_answer_the_legacy_json(client, gallery):
    r = client.post("/api/search/batch", json={"image_ids": [103], "topk": 3})
    assert r.status_code == 200, r.text
    hits = gallery.last[0]
    old = json.loads(serve_json.legacy_batch_json(["image_id 103"], [hits], [_sizes(gallery, hits)], 0.0))
    new = json.loads(r.content)
    new.pop("took_ms"), old.pop("took_ms")
    same_json(new, old)

    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 30, 30)).save(buf, format="PNG")
    photos = [("images", (f"p{j}.png", buf.getvalue(), "image/png")) for j in range(2)]
    r = client.post("/api/search/images", files=photos, data={"topk": "3", "camera": "2"})
    assert r.status_code == 200, r.text
    old = json.loads(serve_json.legacy_batch_json(["p0.png", "p1.png"], gallery.last,
                                                  [_sizes(gallery, h) for h in gallery.last], 0.0))
    new = json.loads(r.content)
    new.pop("took_ms"), old.pop("took_ms")
    same_json(new, old)


def test_openapi_still_documents_the_response_models(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, model in [("/api/search", "SearchResponse"), ("/api/search/batch", "BatchResponse"),
                        ("/api/search/images", "BatchResponse")]:
        schema = paths[path]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}


HITS = [Hit(1, 0.875, 7, "/g/0007_c002_00030640_0.jpg", 2, 7, "00030640",
            [[1, 2.5, 30, 40, 0.5, "wheel"], [0, 0, 4, 4], [1, 1, 2, 2, 0.25, "logo", "identity"]]),
        Hit(2, 0.5, 9, "", None, None, None, [])]


@pytest.mark.parametrize("min_score", [None, 0.6])
def test_builders_on_index_hits_and_box_kinds(min_score):
    boxes = [PartBox(1.5, 2, 30, 40, 0.75, "light", "identity"), {"x1": 1, "y1": 2, "x2": 3, "y2": 4},
             (np.float32(1.25), 2, 3, 4, np.float64(0.5))]
    sizes = [(320, 240), None]
    old = json.loads(serve_json.legacy_search_json(None, 640, 480, boxes, HITS, sizes, 3.5, min_score))
    new = json.loads(responses.encode_json(serve_json.search_dict(None, 640, 480, boxes, HITS, sizes, 3.5,
                                                                  min_score)))
    same_json(new, old)
    assert new["results"][1]["name"] == "9"  # no path: the id stands in, as before


def test_a_mapping_hit_is_read_as_an_index_hit():
    same_json(responses.hit_json(HITS[0].to_dict(), (3, 4)), responses.hit_json(HITS[0], (3, 4)))


@pytest.mark.parametrize("encoder", ["orjson", "json"])
def test_encoders_agree_on_numpy_values_and_non_finite_floats(monkeypatch, encoder):
    if encoder == "json":
        monkeypatch.setattr(responses, "orjson", None)
    elif responses.orjson is None:
        pytest.skip("orjson is not installed")
    body = {"a": np.int64(3), "b": np.float32(0.5), "c": [math.nan, math.inf, 1.0], "d": "é", "e": np.arange(2)}
    raw = responses.encode_json(body)
    assert b" " not in raw and "é".encode() in raw  # compact, UTF-8 (not \\u escapes), as pydantic writes
    assert json.loads(raw) == {"a": 3, "b": 0.5, "c": [None, None, 1.0], "d": "é", "e": [0, 1]}


def test_benchmark_measures_both_paths_on_the_same_answers():
    rows = serve_json.measure(reps=2, parts=2)  # also asserts the two paths' JSON are equal
    assert set(rows) == {"search_top10", "search_top10_sightings", "batch_8x10"}
    assert all(r["legacy_us"] > 0 and r["new_us"] > 0 and r["bytes"] > 0 for r in rows.values())
