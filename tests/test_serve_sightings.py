"""``POST /api/search`` with ``group=camera``: a query's sightings on a fake gallery with cameras and times."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pgan.serve import ServeSettings, create_app
from serve_helpers import FakeExtractor, FakeIndex


@pytest.fixture
def gallery(tmp_path):
    g = FakeIndex(tmp_path / "gallery")  # image 100+i: vehicle i % 6, camera i % 3
    # Later images were taken earlier, so time order is not id or rank order; 105 and 110 have no time.
    g.times = {100 + i: f"{(12 - i) * 10:08d}" for i in range(12) if i not in (5, 10)}
    return g


@pytest.fixture
def client(gallery):
    with TestClient(create_app(gallery, FakeExtractor(), ServeSettings(max_topk=20))) as c:
        yield c


def _search(client, **form) -> dict:
    r = client.post("/api/search", data={"image_id": "102", "topk": "12", **form})
    assert r.status_code == 200, r.text
    return r.json()


def test_sightings_group_every_result_by_camera_in_time_order(client, gallery):
    body = _search(client, group="camera", min_score="-1")
    view = body["sightings"]
    assert view["min_score"] == -1 and view["below_min_score"] == 0
    cams = view["cameras"]
    assert [c["camera"] for c in cams][0] == 2  # the query itself (score 1) is camera 2's
    assert sorted(c["camera"] for c in cams) == [0, 1, 2]
    assert [c["best_score"] for c in cams] == sorted((c["best_score"] for c in cams), reverse=True)
    by_camera = {c["camera"]: c for c in cams}
    for cam, group in by_camera.items():
        expected = {r["image_id"] for r in body["results"] if r["camera"] == cam}
        assert group["count"] == len(group["results"]) == len(expected)
        assert {r["image_id"] for r in group["results"]} == expected
        assert group["best_score"] == max(r["score"] for r in group["results"])
    # camera 2 holds images 102, 105, 108, 111 at times 100, none, 40, 10: timed ones first, earliest first
    assert [r["image_id"] for r in by_camera[2]["results"]] == [111, 108, 102, 105]
    assert (by_camera[2]["first_seen"], by_camera[2]["last_seen"]) == ("00000010", "00000100")
    assert by_camera[2]["results"][0] == next(r for r in body["results"] if r["image_id"] == 111)  # in full
    # camera 1 holds 101, 104, 107, 110 at 110, 80, 50, none
    assert [r["image_id"] for r in by_camera[1]["results"]] == [107, 104, 101, 110]


def test_the_score_threshold_default_and_given(client):
    body = _search(client, group="camera")
    view = body["sightings"]
    assert view["min_score"] == 0.5  # the documented default
    for least in ("0.5", "0.97"):
        view = _search(client, group="camera", min_score=least)["sightings"]
        kept = {r["image_id"] for c in view["cameras"] for r in c["results"]}
        assert kept == {r["image_id"] for r in body["results"] if r["score"] >= float(least)}
        assert view["below_min_score"] == len(body["results"]) - len(kept)
    assert kept == {102, 108}  # the query's colour; at 0.5 also the 4 mixed colours (about 0.8), not the 6 others
    assert body["sightings"]["below_min_score"] == 6


def test_without_group_there_are_no_sightings_and_the_results_are_unchanged(client):
    plain, grouped = _search(client), _search(client, group="camera")
    assert plain["sightings"] is None
    assert plain["results"] == grouped["results"]
    assert _search(client, group="")["sightings"] is None  # an empty form field is no grouping


@pytest.mark.parametrize("form,fragment", [
    ({"group": "vehicle"}, "group must be 'camera'"),
    ({"group": "camera", "min_score": "high"}, "min_score must be a number"),
    ({"group": "camera", "min_score": "1.5"}, "between -1 and 1"),
    ({"group": "camera", "min_score": "nan"}, "between -1 and 1"),
    ({"min_score": "0.3"}, "send it with group=camera"),
])
def test_bad_group_or_min_score_is_a_one_line_422(client, form, fragment):
    r = client.post("/api/search", data={"image_id": "102", **form})
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error"} and "\n" not in body["error"] and fragment in body["error"]


def test_docs_show_the_group_fields_and_the_sightings_schema(client):
    spec = client.get("/openapi.json").json()
    form = next(iter(spec["paths"]["/api/search"]["post"]["requestBody"]["content"].values()))["schema"]
    form = spec["components"]["schemas"][form["$ref"].rsplit("/", 1)[1]] if "$ref" in form else form
    assert {"group", "min_score"} <= set(form["properties"])
    assert {"SightingsView", "CameraGroup"} <= set(spec["components"]["schemas"])
    assert "first_seen" in spec["components"]["schemas"]["CameraGroup"]["properties"]
