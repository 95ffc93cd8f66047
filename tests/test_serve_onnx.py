"""``pgan serve --runtime onnx`` over a real tiny model and index: the fp32 export answers what the eager
model answers, an int8 export serves its own index closely, and a model the index was not built with is
refused at start-up in one line."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pgan.errors import IndexMismatchError, PganError
from pgan.inference import export_onnx
from pgan.serve import ServeSettings, create_app, load_service
from serve_helpers import build_tiny_index


@pytest.fixture(scope="module")
def served(tiny_synth, tiny_checkpoint, tmp_path_factory):
    """An index of the tiny test split (eager model, proposals) and the model's fp32 export."""
    root = tmp_path_factory.mktemp("serve-onnx")
    ckpt = tiny_checkpoint("pgan")
    build_tiny_index(tiny_synth, ckpt, root)
    export_onnx(ckpt, root / "m.onnx")
    return root


def _answers(service, files, expect_runtime: str) -> list[dict]:
    """The search response for an upload of each file."""
    with TestClient(create_app(*service, ServeSettings())) as client:
        assert client.get("/api/info").json()["runtime"] == expect_runtime
        out = []
        for f in files:
            r = client.post("/api/search", files={"image": (f.name, f.read_bytes(), "image/jpeg")},
                            data={"topk": "5"})
            assert r.status_code == 200, r.text
            out.append(r.json())
        return out


def test_the_onnx_fp32_service_answers_the_eager_services_top_hits(served):
    files = sorted((served / "gallery").iterdir())[::4]
    eager = _answers(load_service(served / "index", device="cpu"), files, "torch")
    onnx = _answers(load_service(served / "index", runtime="onnx", onnx_path=served / "m.onnx", device="cpu",
                                 threads=1), files, "onnx fp32")
    for f, a, b in zip(files, eager, onnx):
        assert a["results"][0]["name"] == f.name  # each upload finds itself first
        assert [h["image_id"] for h in b["results"]] == [h["image_id"] for h in a["results"]]
        assert [h["score"] for h in b["results"]] == pytest.approx([h["score"] for h in a["results"]], abs=1e-4)
        assert b["query"]["boxes"] == a["query"]["boxes"]  # the same part boxes, found off the model's thread


def test_a_model_the_index_was_not_built_with_is_refused_in_one_line(served, tiny_checkpoint, run_cli, capsys):
    other = export_onnx(tiny_checkpoint("pgan", "run.seed=7"), served / "other.onnx")  # 64-d too, other weights
    with pytest.raises(IndexMismatchError, match="was built with model"):
        load_service(served / "index", runtime="onnx", onnx_path=other, device="cpu")
    with pytest.raises(IndexMismatchError, match="exported from another model"):  # export of another checkpoint
        load_service(served / "index", checkpoint=tiny_checkpoint("pgan"), runtime="onnx", onnx_path=other,
                     device="cpu")
    with pytest.raises(PganError, match="ONNX model .*gone.onnx does not exist"):
        load_service(served / "index", runtime="onnx", onnx_path=served / "gone.onnx")
    with pytest.raises(PganError, match="needs --onnx"):
        load_service(served / "index", runtime="onnx")
    assert run_cli("serve", "--index", served / "index", "--runtime", "onnx", "--onnx", other,
                   "--device", "cpu") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pgan: error: index") and "was built with model" in err and "\n" not in err
    assert run_cli("serve", "--index", served / "index", "--onnx", served / "m.onnx") == 2
    err = capsys.readouterr().err.strip()
    assert "--onnx needs --runtime onnx" in err and "\n" not in err


@pytest.mark.slow
def test_an_int8_export_serves_its_own_index_close_to_the_eager_model(served, tiny_synth):
    from pgan.index import build_index
    from pgan.inference import FeatureExtractor, quantize_int8

    calibration = sorted((tiny_synth / "image_train").iterdir())[:16]
    int8 = quantize_int8(served / "m.onnx", served / "m8.onnx", calibration)
    with pytest.raises(IndexMismatchError, match="was built with model"):  # int8 embeddings are another model's
        load_service(served / "index", runtime="onnx", onnx_path=int8, device="cpu")
    build_index(served / "gallery", served / "index8", parts="proposals", progress=False,
                extractor=FeatureExtractor(int8, runtime="onnx", parts="proposals", device="cpu", batch_size=8))
    files = sorted((served / "gallery").iterdir())[::4]
    eager = _answers(load_service(served / "index", device="cpu"), files, "torch")
    quant = _answers(load_service(served / "index8", runtime="onnx", onnx_path=int8, device="cpu", threads=1),
                     files, "onnx int8")
    overlap = []
    for f, a, b in zip(files, eager, quant):
        assert b["results"][0]["name"] == f.name and b["results"][0]["score"] == pytest.approx(1.0, abs=1e-4)
        overlap.append(len({h["image_id"] for h in a["results"]} & {h["image_id"] for h in b["results"]}) / 5)
    assert sum(overlap) / len(overlap) >= 0.6  # int8 keeps most of the eager top 5
