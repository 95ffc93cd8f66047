"""The HTTP API over a real (tiny) index: filters as form fields, batch and vector queries, and removals
made by another writer while the server runs never answered."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pgan.index import GalleryIndex
from pgan.serve import ServeSettings, create_app, load_service
from serve_helpers import build_tiny_index


@pytest.fixture(scope="module")
def real_index(tiny_synth, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-queries")
    build_tiny_index(tiny_synth, tiny_checkpoint("pgan"), root)
    return root


def test_filters_batches_and_vectors_over_http(real_index):
    index, extractor = load_service(real_index / "index", device="cpu")
    files = sorted((real_index / "gallery").iterdir())
    cams = {i: int(f.name[6:9]) for i, f in enumerate(files)}
    vids = {i: int(f.name[:4]) for i, f in enumerate(files)}
    with TestClient(create_app(index, extractor, ServeSettings(reload_seconds=0))) as client:
        some_cam, some_vid = cams[0], vids[5]
        r = client.post("/api/search", data={"image_id": "0", "topk": "16", "exclude_camera": str(some_cam)})
        assert r.status_code == 200, r.text
        got = r.json()["results"]
        assert got and all(h["camera"] != some_cam for h in got)
        assert len(got) == sum(c != some_cam for c in cams.values())
        r = client.post("/api/search", data={"image_id": "0", "topk": "16", "vehicle_id": str(some_vid)})
        assert sorted(h["image_id"] for h in r.json()["results"]) == [i for i, v in vids.items() if v == some_vid]
        stamps = sorted(int(f.name[10:18]) for f in files)
        lo, hi = stamps[4], stamps[11]
        r = client.post("/api/search", data={"image_id": "0", "topk": "16", "since": f"{lo:08d}",
                                             "until": f"{hi:08d}"})
        assert sorted(int(h["timestamp"]) for h in r.json()["results"]) == stamps[4:12]
        for field, value, message in (("since", "yesterday", "since 'yesterday' is not a time"),
                                      ("camera", "three", "camera must be an integer"),
                                      ("vehicle_id", "1.5", "vehicle_id must be an integer"),
                                      ("cam", "3", "unknown field 'cam'")):
            r = client.post("/api/search", data={"image_id": "0", field: value})
            assert r.status_code == 422 and message in r.json()["error"]
        # Batch: raw vectors and gallery ids in one request, one result list each, in order.
        vecs = [index.vector(i) for i in (3, 7)]
        r = client.post("/api/search/batch", json={"vectors": [(2 * vecs[0]).tolist()], "image_ids": [7, 9],
                                                   "topk": 3})
        assert r.status_code == 200, r.text
        body = r.json()["queries"]
        assert [q["query"] for q in body] == ["vector 0", "image_id 7", "image_id 9"]
        assert [q["results"][0]["image_id"] for q in body] == [3, 7, 9]
        assert body[0]["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)  # normalised on arrival
        r = client.post("/api/search/batch", json={"image_ids": [0], "topk": 16, "camera": some_cam})
        assert {h["camera"] for h in r.json()["queries"][0]["results"]} == {some_cam}
        for body, message in (({"vectors": [[1.0, 2.0]]}, "vectors[0] must be 64 finite numbers"),
                              ({}, "at least one query"), ({"image_ids": [999]}, "image id 999 is not in"),
                              ({"image_ids": list(range(65))}, "at most 64 queries"),
                              ({"image_ids": [1], "cam": 3}, "cam: Extra inputs are not permitted")):
            r = client.post("/api/search/batch", json=body)
            assert r.status_code in (404, 422) and message in r.json()["error"], r.text
        # Several photos in one multipart request.
        r = client.post("/api/search/images", data={"topk": "1"},
                        files=[("images", (f.name, f.read_bytes(), "image/jpeg")) for f in files[:3]])
        assert r.status_code == 200, r.text
        assert [q["results"][0]["name"] for q in r.json()["queries"]] == [f.name for f in files[:3]]


def test_a_running_server_never_answers_an_item_another_process_removed(real_index, tmp_path):
    import shutil

    shutil.copytree(real_index / "index", tmp_path / "index")
    index, extractor = load_service(tmp_path / "index", device="cpu")
    with TestClient(create_app(index, extractor, ServeSettings(reload_seconds=3600))) as client:
        first = client.post("/api/search", data={"image_id": "4", "topk": "16"}).json()["results"]
        assert first[0]["image_id"] == 4 and len(first) == 16
        with GalleryIndex.open(tmp_path / "index", readonly=False) as writer:  # as 'pgan index remove' does
            assert writer.remove(ids=[5, 6]) == [5, 6]
        r = client.post("/api/search/batch", json={"vectors": [np.asarray(index.vector(4)).tolist()], "topk": 16})
        ids = [h["image_id"] for h in r.json()["queries"][0]["results"]]
        assert len(ids) == 14 and not {5, 6} & set(ids)
        r = client.post("/api/search", data={"image_id": "5"})
        assert r.status_code == 404
