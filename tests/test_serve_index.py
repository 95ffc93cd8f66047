"""``pgan serve`` over a real gallery index and model (tiny): start-up checks and a search end to end."""

from __future__ import annotations

import io

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
        assert info["gallery_size"] == len(files) == 16 and info["index_type"] == "Flat"
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
        thumb = client.get(f"/api/images/{first['image_id']}?size=32")
        assert max(Image.open(io.BytesIO(thumb.content)).size) == 32


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
