"""``pgan serve`` over a real gallery index and model (tiny): start-up checks and a search end to end."""

from __future__ import annotations

import io
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pgan.errors import IndexMismatchError, PganError
from pgan.serve import ServeSettings, create_app, load_service
from pgan.serve.server import exposure_warning, is_loopback
from serve_helpers import build_tiny_index


@pytest.fixture(scope="module")
def real_index(tiny_synth, tiny_checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-index")
    build_tiny_index(tiny_synth, tiny_checkpoint("pgan"), root)
    return root


def test_search_real_index_finds_the_uploaded_gallery_image_first(real_index):
    index, extractor = load_service(real_index / "index", device="cpu")  # checkpoint and parts from the index
    files = sorted((real_index / "gallery").iterdir())
    with TestClient(create_app(index, extractor, ServeSettings())) as client:
        info = client.get("/api/info").json()
        assert info["gallery_size"] == len(files) == 16 and info["index_type"] == "auto"
        assert info["model_fingerprint"] == extractor.model_fingerprint and info["embedding_dim"] == 64
        for f in files[:3]:
            r = client.post("/api/search", files={"image": (f.name, f.read_bytes(), "image/jpeg")},
                            data={"topk": "5"})
            assert r.status_code == 200, r.text
            body = r.json()
            first = body["results"][0]
            assert first["name"] == f.name and first["score"] == pytest.approx(1.0, abs=1e-4)
            assert first["vehicle_id"] == int(f.name[:4]) and first["camera"] == int(f.name[6:9])
            assert [h["rank"] for h in body["results"]] == [1, 2, 3, 4, 5]
            assert 0 < len(body["query"]["boxes"]) <= 8  # proposals, top-D
            assert len(first["boxes"]) == len(body["query"]["boxes"])  # same image, same part pipeline
            # Searching with the same image by its gallery id gives the same ranking.
            again = client.post("/api/search", data={"image_id": str(first["image_id"]), "topk": "5"}).json()
            assert [h["image_id"] for h in again["results"]] == [h["image_id"] for h in body["results"]]
        thumb = client.get(f"/api/images/{first['image_id']}?size=32")  # served at the fixed size 64
        assert max(Image.open(io.BytesIO(thumb.content)).size) == 64


def _unreduced_baseline(tiny_checkpoint):
    """A model of another dimension: the baseline at ResNet-18's 512 channels (the index holds 64-d)."""
    return tiny_checkpoint("baseline", "model.baseline_reduce=false")


def test_refuses_to_start_on_a_missing_index_or_another_model(real_index, tiny_checkpoint, tmp_path):
    with pytest.raises(PganError, match="does not exist"):
        load_service(tmp_path / "nowhere")
    (tmp_path / "not-an-index").mkdir()
    with pytest.raises(PganError, match="not a gallery index"):
        load_service(tmp_path / "not-an-index")
    with pytest.raises(IndexMismatchError, match="holds 64-d embeddings; this model gives 512-d"):
        load_service(real_index / "index", checkpoint=_unreduced_baseline(tiny_checkpoint), device="cpu")
    with pytest.raises(IndexMismatchError, match="was built with model"):  # same size, other weights
        load_service(real_index / "index", checkpoint=tiny_checkpoint("grid"), parts="grid", device="cpu")
    with pytest.raises(PganError, match="checkpoint .* does not exist"):
        load_service(real_index / "index", checkpoint=tmp_path / "gone.pt")


def test_cli_start_up_errors_are_one_line(run_cli, real_index, tiny_checkpoint, tmp_path, capsys):
    assert run_cli("serve", "--index", tmp_path / "nowhere") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pgan: error: index") and "\n" not in err
    assert run_cli("serve", "--index", real_index / "index", "--checkpoint", _unreduced_baseline(tiny_checkpoint),
                   "--device", "cpu") == 2
    err = capsys.readouterr().err.strip()
    assert "this model gives 512-d" in err and "\n" not in err


def test_non_loopback_hosts_warn():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert exposure_warning("127.0.0.1", None) is None
    assert "NO authentication" in exposure_warning("0.0.0.0", None)
    assert "bearer token" in exposure_warning("0.0.0.0", "tok")


def test_a_part_file_model_serves_uploads_with_proposals_and_says_so(tiny_synth, tiny_checkpoint, tmp_path,
                                                                      caplog):
    """The README's path after `make demo`: an index built with the model's own (ground-truth) boxes, served
    without --parts, answers an uploaded photo."""
    from pgan.index import build_index

    build_index(tiny_synth / "image_test", tmp_path / "gallery", checkpoint=tiny_checkpoint("pgan"),
                device="cpu", progress=False)  # as `pgan index build` in the README: no --parts
    index, extractor = load_service(tmp_path / "gallery", device="cpu")
    warned = [r.getMessage() for r in caplog.records if "uploads use 'proposals'" in r.getMessage()]
    assert len(warned) == 1 and "\n" not in warned[0] and "--parts" in warned[0]
    assert extractor.new_photo_parts == "proposals"
    photo = sorted((tiny_synth / "image_query").glob("*.jpg"))[0]
    with TestClient(create_app(index, extractor, ServeSettings())) as client:
        r = client.post("/api/search", files={"image": ("photo.jpg", photo.read_bytes(), "image/jpeg")},
                        data={"topk": "5"})  # curl -F image=@photo.jpg -F topk=5 .../api/search
        assert r.status_code == 200, r.text
        assert len(r.json()["results"]) == 5 and 0 < len(r.json()["query"]["boxes"]) <= 8
        info = client.get("/api/info").json()
        assert info["upload_parts"] == "proposals" and info["upload_parts_fallback"] is True
        assert len(info["warnings"]) == 1 and "part source 'file'" in info["warnings"][0]
    _, explicit = load_service(tmp_path / "gallery", parts="proposals", device="cpu")  # used as is, no note
    assert explicit.new_photo_parts == "proposals" and explicit.parts_note is None


def test_search_by_id_uses_the_stored_vector(real_index):
    index, extractor = load_service(real_index / "index", device="cpu")
    with TestClient(create_app(index, extractor, ServeSettings())) as client:
        before = client.get("/api/info").json()["inference"]["images"]
        for image_id in (0, 7, 15):
            body = client.post("/api/search", data={"image_id": str(image_id), "topk": "3"}).json()
            assert body["results"][0]["image_id"] == image_id
            assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-6)
            assert [b["x1"] for b in body["query"]["boxes"]] == [b[0] for b in index.get(image_id).boxes]
        assert client.get("/api/info").json()["inference"]["images"] == before  # nothing was embedded


def test_index_add_while_serving_never_fails_a_search_and_its_rows_appear(real_index, tiny_synth, tmp_path):
    import shutil
    import threading

    from pgan.index import add_to_index

    served = tmp_path / "index"
    shutil.copytree(real_index / "index", served)
    more = tmp_path / "more"
    shutil.copytree(tiny_synth / "image_query", more)
    n_more = len(list(more.iterdir()))
    index, extractor = load_service(served, device="cpu")
    query = sorted((real_index / "gallery").iterdir())[0].read_bytes()
    errors: list[BaseException] = []

    def grow() -> None:
        try:
            add_to_index(served, more, device="cpu", batch_size=2, progress=False)
        except BaseException as exc:  # reported by the test below
            errors.append(exc)

    with TestClient(create_app(index, extractor, ServeSettings(reload_seconds=0.05))) as client:
        writer = threading.Thread(target=grow)
        writer.start()
        statuses = []
        for _ in range(2000):  # bounded; searches all through the add
            r = client.post("/api/search", files={"image": ("q.jpg", query, "image/jpeg")}, data={"topk": "3"})
            statuses.append(r.status_code)
            assert r.status_code == 200, r.text
            if not writer.is_alive():
                break
        writer.join(120)
        assert not errors and not writer.is_alive() and len(statuses) >= 2
        for _ in range(200):  # the watcher swaps the new snapshot in within a few reload periods
            if client.get("/api/health").json()["gallery_size"] == 16 + n_more:
                break
            time.sleep(0.05)
        assert client.get("/api/health").json()["gallery_size"] == 16 + n_more
        added = sorted(more.iterdir())[1]
        r = client.post("/api/search", files={"image": ("new.jpg", added.read_bytes(), "image/jpeg")},
                        data={"topk": "1"})
        first = r.json()["results"][0]
        assert first["name"] == added.name and first["score"] == pytest.approx(1.0, abs=1e-4)
