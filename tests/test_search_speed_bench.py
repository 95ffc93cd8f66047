"""benchmarks/search_speed.py at a tiny size: its phases, its report, and that the product path
(``GalleryIndex.search``) returns what raw faiss returns."""

import json

import numpy as np
import pytest

pytest.importorskip("faiss")
pytest.importorskip("threadpoolctl")

from bench_helpers import load_benchmark  # noqa: E402


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("search_speed")


def test_build_then_time_reports_product_and_raw_rows(bench, tmp_path, capsys):
    argv = ["--sizes", "400", "--milvus-sizes", "400", "--dim", "16", "--queries", "30", "--brute-queries", "10",
            "--methods", "flat", "hnsw", "brute", "--hnsw-ef", "16", "64", "--out", str(tmp_path / "idx"),
            "--json", str(tmp_path / "report.json")]
    assert bench.main(["--phase", "build", *argv]) is None
    assert not (tmp_path / "report.json").exists()  # building writes no report
    assert bench.main(["--phase", "build", *argv]) is None
    assert capsys.readouterr().out.count("built already") >= 2  # the second build skips what is there

    report = bench.main(["--phase", "time", *argv])
    assert json.loads((tmp_path / "report.json").read_text())["rows"] == report["rows"]
    assert all(p["num_threads"] == 1 for p in report["thread_pools"])
    rows = {(r["method"], json.dumps(r["search_params"])): r for r in report["rows"]}
    flat = rows[("faiss Flat", "{}")]
    assert flat["recall_at_10"] == 1.0 and flat["queries_timed"] == 10
    for ef in (16, 64):
        assert rows[("faiss HNSW32,Flat", json.dumps({"efSearch": ef}))]["queries_timed"] == 30
    for r in report["rows"]:
        assert set(r["raw_ms"]) == {"median", "mean", "p95", "p99"} and r["n"] == 400
        assert 0 < r["raw_ms"]["median"] <= r["raw_ms"]["p95"]
        if r["engine"] in ("faiss", "milvus-lite"):
            assert r["product_same_ids"] == 1.0  # metadata lookup changes nothing about which items come back
            assert set(r["product_ms"]) == {"median", "mean", "p95", "p99"}
        else:
            assert r["product_ms"] is None and r["recall_at_10"] == 1.0  # numpy / torch brute force are exact
    milvus = [r for r in report["rows"] if r["engine"] == "milvus-lite"]
    assert len(milvus) == (2 if bench.milvus_missing() is None else 0)
    assert all(r["build_params"] == {"M": 32, "efConstruction": 80} for r in milvus)
    assert "| faiss Flat | - | 400 | 1.0000 |" in capsys.readouterr().out
    assert set(report["summary"]["400"]) >= {"best_hnsw", "product_median_ms", "product_p95_ms", "goal_met"}


def test_an_interrupted_build_is_started_again(bench, tmp_path):
    import numpy as np

    from pgan.index.store import GalleryIndex

    vecs = bench.random_vectors(50, 8, seed=1)[0]
    target = tmp_path / "Flat"
    target.with_name("Flat.partial").mkdir()  # left by a killed build
    (target.with_name("Flat.partial") / "junk").write_text("x")
    bench.build_gallery_index(target, vecs, "Flat", {"efConstruction": 40, "efSearch": 16, "nprobe": 1})
    assert not target.with_name("Flat.partial").exists()
    with GalleryIndex.open(target) as idx:
        hits = idx.search(vecs[7], 3)[0]
        assert hits[0].image_id == 7 and hits[0].vehicle_id == 0 and hits[0].path.endswith("00000007.jpg")
        assert np.allclose(idx.vector(7), vecs[7])


def test_the_scale_phase_writes_rows_beside_the_others_and_resumes(bench, tmp_path):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"rows": [{"method": "kept"}]}))
    argv = ["--phase", "scale", "--n", "12000", "--dim", "16", "--queries", "20", "--milvus-n", "0",
            "--out", str(tmp_path / "scale"), "--json", str(report)]
    rows = bench.main(argv)
    saved = json.loads(report.read_text())
    assert saved["rows"] == [{"method": "kept"}] and saved["scale_rows"] == rows
    assert {r["key"] for r in rows} == {f"faiss auto {g} 12000 {f}" for g in ("clustered", "random")
                                        for f in ("none", "camera", "time", "add_1000")}
    for r in rows:
        if "add_1000_s" in r:
            assert 0 < r["add_1000_s"] < 10
            continue
        # auto at 12,000 rows: one exact segment, so recall is 1 filtered or not
        assert r["segment_types"] == {"Flat": 1} and r["setting"] == "auto"
        assert r["recall_at_10"] == 1.0 and r["queries_timed"] == 20
        b = r["bytes_per_item"]
        assert b["vector"] == 64 and 64 <= b["engine"] < b["local_disk"] and b["metadata"] > 0
        assert (r["filter"] or {}).get("selectivity") in (None, 0.01, 0.1)
    assert set(saved["scale_summary"]) == {"auto clustered 12000", "auto random 12000"}
    assert bench.main(argv) == rows  # every stage done: nothing is run again


def test_exact_answers_of_the_scale_phase_match_a_full_sort():
    scale = load_benchmark("search_scale")
    rng = np.random.default_rng(3)
    g = rng.standard_normal((1000, 8)).astype(np.float32)
    q = rng.standard_normal((7, 8)).astype(np.float32)
    keep = rng.random(1000) < 0.3
    for mask in (None, keep):
        allowed = np.arange(1000) if mask is None else np.flatnonzero(mask)
        want = [set(allowed[np.argsort(-(g[allowed] @ x))[:10]].tolist()) for x in q]
        assert scale.exact_top_k(g, q, mask, 10, chunk=64) == want  # chunks smaller than the selection
        assert scale.exact_top_k(g, q, mask, 10, chunk=5000) == want
