"""benchmarks/serve_load.py: the figures of a row from a fake measurement, the stage timer on fakes, how
the client process is pinned, and which model and index each service serves."""

import io
import os
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from bench_helpers import load_benchmark

serve_load = load_benchmark("serve_load")

STAGES = {"decode": 1.0, "part_boxes": 4.0, "resize_normalise": 0.5, "model_batch1": 6.0, "index_search": 0.5,
          "model_batch8_per_image": 2.0}


def fake_load(**changes):
    load = {"latencies": [0.010, 0.020, 0.030, 0.040], "errors": [], "corrupt_sent": 2, "corrupt_refused": 2,
            "correct_top1": 3, "answered": 6, "wall_s": 2.0, "cpu_s": 0.3}
    return {**load, **changes}


def test_row_figures_from_a_fake_measurement():
    info0 = {"inference": {"batches": 10, "images": 12}}
    info1 = {"inference": {"batches": 30, "images": 52}, "runtime": "onnx", "model_fingerprint": "abc",
             "gallery_size": 100, "embedding_dim": 64}
    row = serve_load.service_row("onnx-int8", info0, info1, fake_load(), 0.12, 3.04, True, True, STAGES)
    assert row["requests"] == 4 and row["errors"] == 0 and row["throughput_rps"] == 2.0
    assert row["p50_ms"] == 25.0 and row["corrupt_refused_4xx"] == row["corrupt_uploads"] == 2
    assert row["answered_requests"] == 6 and row["server_cpu_s"] == 0.12
    assert row["server_cpu_ms_per_request"] == 20.0  # 120 ms over 6 answered requests
    assert row["server_cpu_ms_per_valid_search"] == 30.0  # over the 4 valid searches
    assert row["server_cpu_cores_busy"] == 0.06 and row["client_cpu_ms_per_request"] == 50.0
    assert row["mean_batch"] == 2.0  # 40 images in 20 batches during the load
    assert row["mean_batch_source"].startswith("/api/info")
    assert row["stages_cpu_ms_per_request"] == STAGES
    assert row["top1_same_vehicle"] == 0.75 and row["startup_s"] == 3.0 and row["runtime"] == "onnx"
    # The model at the mean batch of 2: a + b / 2 through 6 ms at batch 1 and 2 ms per image at batch 8.
    b = (6.0 - 2.0) * 8 / 7
    assert row["model_cpu_ms_at_mean_batch"] == round(6.0 - b + b / 2, 3) == 3.714
    assert row["other_cpu_ms_per_request"] == round(20 - (1 + 4 + 0.5 + 0.5) - (6.0 - b + b / 2), 2) == 10.29


def test_model_cost_at_a_mean_batch():
    stages = {"model_batch1": 6.0, "model_batch8_per_image": 2.0}
    assert serve_load.model_at_batch(stages, 1.0) == 6.0
    assert serve_load.model_at_batch(stages, 8.0) == pytest.approx(2.0)
    assert 2.0 < serve_load.model_at_batch(stages, 3.0) < 6.0
    assert serve_load.model_at_batch(stages, None) == 6.0  # no batch figure from /api/info
    assert serve_load.model_at_batch({"model_batch1": 6.0}, 4.0) == 6.0  # no batched measurement


def test_row_without_batches_stages_or_answers():
    row = serve_load.service_row("eager", {}, {"runtime": "torch"},
                                 fake_load(latencies=[], answered=0, errors=["search: ConnectError"]),
                                 0.5, 1.0, False, True)
    assert row["mean_batch"] is None and row["mean_batch_source"] == "not reported by /api/info"
    assert row["server_cpu_ms_per_request"] is None and row["server_cpu_ms_per_valid_search"] is None
    assert row["stages_cpu_ms_per_request"] is None and row["other_cpu_ms_per_request"] is None
    assert row["errors"] == 2  # the failed request and the changed answers
    assert row["p95_ms"] is None


class FakeParts:
    def boxes(self, images):
        return [[] for _ in images]

    def masks(self, parts, feat_size):
        return np.zeros((len(parts), 2, *feat_size), np.float32)


class FakeExtractor:
    input_size, feat_size = (32, 32), (4, 4)
    parts = FakeParts()

    def __init__(self):
        self.batches = []

    def embed_prepared(self, x, m):
        assert x.shape[1:] == (3, 32, 32) and m.shape[1:] == (2, 4, 4)
        self.batches.append(len(x))
        return np.ones((len(x), 8), np.float32) / np.sqrt(8)


class FakeIndex:
    def __init__(self):
        self.calls = 0

    def search(self, emb, topk):
        self.calls += 1
        assert emb.shape == (1, 8) and topk == 10
        return [[]]


def jpeg(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG")
    return buf.getvalue()


def test_stage_timer_runs_every_stage_on_every_upload():
    fx, index = FakeExtractor(), FakeIndex()
    out = serve_load.stage_cpu_ms(fx, index, [jpeg(i) for i in range(5)], max_batch=2)
    assert set(out) == set(serve_load.STAGES) | {"model_batch2_per_image"}
    assert all(v >= 0 for v in out.values())
    assert index.calls == 6  # a warm-up, then each of the 5 uploads
    assert fx.batches == [1] * 6 + [2, 2]  # batch 1 for each upload, then whole batches of 2 only


def test_decode_bytes_gives_the_pixels():
    data = jpeg(0)
    d = serve_load.decode_bytes(data)
    assert d.rgb.shape == (40, 60, 3) and d.rgb.dtype == np.uint8 and d.path is None
    with Image.open(io.BytesIO(data)) as im:
        np.testing.assert_array_equal(d.rgb, np.asarray(im.convert("RGB")))


def test_client_core_and_process_cpu():
    core, how = serve_load.client_core()
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) >= 2:
        assert core == max(os.sched_getaffinity(0)) and how.startswith("pinned to core")
    else:
        assert core is None and "not pinned" in how
    me = psutil.Process()
    before = serve_load.process_cpu_s(me)
    sum(i * i for i in range(300_000))
    assert serve_load.process_cpu_s(me) > before


@pytest.mark.parametrize("name, runtime, model, index", [
    ("eager", "torch", "checkpoint", "index"), ("onnx-fp32", "onnx", "onnx-fp32", "index"),
    ("onnx-int8", "onnx", "onnx-int8", "index-int8"),
    ("baseline", "torch", "baseline-checkpoint", "baseline-index"),
    ("baseline-onnx-int8", "onnx", "baseline-onnx-int8", "baseline-index-int8"),
    ("boxhead-onnx-int8", "onnx", "boxhead-onnx-int8", "boxhead-index-int8")])
def test_each_service_serves_its_own_model_and_index(name, runtime, model, index):
    keys = ("checkpoint", "onnx-fp32", "onnx-int8", "index", "index-int8")
    paths = {f"{pre}{k}": Path(f"/w/{pre}{k}") for pre in ("", "baseline-", "boxhead-") for k in keys}
    m = serve_load.service_model(name, paths)
    assert (m["runtime"], m["model"], m["index"]) == (runtime, paths[model], paths[index])
    args = serve_load.service_args(name, paths)
    assert args[:2] == ["--index", str(paths[index])] and str(paths[model]) in args
    assert ("--runtime" in args) == (runtime == "onnx")


def test_the_box_head_service_finds_its_own_parts():
    assert [serve_load.service_parts(s, "proposals") for s in serve_load.SERVICES] == [
        "proposals"] * 5 + ["model"]
    assert {serve_load.model_of(s) for s in serve_load.SERVICES} == set(serve_load.MODELS)
    assert all(serve_load.model_of(s) == m for m, served in serve_load.MODELS.items() for s in served)


def test_the_table_shows_the_parts_each_service_found():
    row = serve_load.service_row("boxhead-onnx-int8", {}, {"runtime": "onnx"}, fake_load(), 0.12, 1.0, True, True)
    md = serve_load.table({"boxhead-onnx-int8": {**row, "query_parts_per_photo": 2.4}})
    assert md.splitlines()[0].endswith("| parts found / query |")
    assert md.splitlines()[2].startswith("| boxhead-onnx-int8 (onnx) | 4 | 0 | 2/2 |")
    assert md.splitlines()[2].endswith("| 2.4 |")
