"""`pgan demo` end to end on a shrunken set: both variants, the report, the figure and the gallery search."""

from __future__ import annotations

import json

import pytest

from pgan.demo import run_demo


@pytest.mark.slow
def test_demo_runs_the_whole_pipeline_and_resumes(tmp_path):
    small = {"num_train_ids": 16, "num_test_ids": 6, "images_per_id": (4, 5), "num_cameras": 3,
             "num_families": 2, "image_size": 64}
    report = run_demo(tmp_path / "runs", tmp_path / "data", epochs=1, synth_overrides=small, progress=False)
    assert set(report) == {"baseline", "pgan", "search"}
    for variant in ("baseline", "pgan"):
        assert 0.0 < report[variant]["mAP"] <= 1.0
    search = report["search"]
    assert search["queries"] == len(list((tmp_path / "data" / "image_query").glob("*.jpg"))) > 0
    assert search["gallery"] == len(list((tmp_path / "data" / "image_test").glob("*.jpg")))
    assert 0.0 <= search["top1_same_vehicle"] <= search["top5_same_vehicle"] <= 1.0
    assert search["top5_same_vehicle"] > 0.0  # six test vehicles, five results: never all wrong by chance
    for name in ("report.md", "report.json", "ranklist.png", "search.png"):
        assert (tmp_path / "runs" / name).is_file()
    assert "## Search a gallery" in (tmp_path / "runs" / "report.md").read_text()
    saved = json.loads((tmp_path / "runs" / "report.json").read_text())
    assert saved["pgan"]["mAP"] == pytest.approx(report["pgan"]["mAP"])
    # A second call reuses the finished runs and the index (nothing is trained or embedded again).
    again = run_demo(tmp_path / "runs", tmp_path / "data", epochs=1, synth_overrides=small, progress=False)
    assert again["pgan"]["mAP"] == pytest.approx(report["pgan"]["mAP"])
    assert again["search"]["top5_same_vehicle"] == pytest.approx(search["top5_same_vehicle"])
