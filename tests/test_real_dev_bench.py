"""benchmarks/real_dev.py on a tiny fake real-dev tree (the real one is never read by tests)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench_helpers import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("real_dev")


def test_the_split_becomes_a_custom_csv_with_val_cameras_as_query_and_gallery(bench, tmp_path):
    from pgan.data.datasets import read_dataset

    root = tmp_path / "real-dev"
    (root / "images").mkdir(parents=True)
    names = {"train.txt": ["car_0001_cam1.jpg", "car_0001_cam2.jpg", "motorcycle_0001_cam1.jpg",
                           "motorcycle_0001_cam2.jpg"],
             "val.txt": ["car_0002_cam2.jpg", "car_0002_cam1.jpg", "truck_0001_cam1.jpg", "truck_0001_cam2.jpg"]}
    for list_file, files in names.items():
        (root / list_file).write_text("\n".join(files) + "\n")
        for f in files:
            Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(root / "images" / f)
    ds = read_dataset("custom", bench.write_csv(root, tmp_path / "out"))
    assert len(ds.train) == 4 and len({r.pid for r in ds.train}) == 2  # car 1 and motorcycle 1 differ
    assert sorted(Path(r.path).name for r in ds.query) == ["car_0002_cam1.jpg", "truck_0001_cam1.jpg"]
    assert sorted(Path(r.path).name for r in ds.gallery) == ["car_0002_cam2.jpg", "truck_0001_cam2.jpg"]
    assert {r.camid for r in ds.query} == {1} and {r.camid for r in ds.gallery} == {2}
    assert not list(root.glob("*.csv"))  # nothing written into the dataset folder


def test_paired_differences_and_their_t_interval(bench, tmp_path):
    lo, hi = bench.t_interval([0.01, 0.02, 0.03])
    half = 4.303 * 0.01 / math.sqrt(3)  # t_{0.975}(2) * sd / sqrt(n)
    assert (lo, hi) == (pytest.approx(0.02 - half), pytest.approx(0.02 + half))
    assert all(math.isnan(v) for v in bench.t_interval([0.5]))
    for label, maps in (("baseline", (0.90, 0.92)), ("pgan, dff", (0.93, 0.92))):
        for seed, m in enumerate(maps):
            run = bench.run_dir(tmp_path, label, seed)
            run.mkdir(parents=True)
            (run / "result.json").write_text(json.dumps({"metrics": {"mAP": m, "rank1": m, "rank5": m},
                                                         "train_seconds": 1.0}))
    result = bench.summarise(tmp_path, ["baseline", "pgan, dff"], [0, 1])
    pair = result["paired_mAP"]["pgan, dff - baseline"]
    assert pair["diffs"] == pytest.approx([0.03, 0.0]) and pair["diff_mean"] == pytest.approx(0.015)
    assert result["summary"]["baseline"]["mAP_mean"] == pytest.approx(0.91)
    assert "| pgan, dff - baseline | +1.5 |" in bench.markdown(result)


def test_the_24_epoch_study_keeps_val_curves_and_draws_them(bench, tmp_path):
    import torch

    study = bench.STUDIES["24ep"]
    assert study.recipe["optim.epochs"] == 24 and study.eval_every == 4
    shared = set(study.variants) & set(bench.VARIANTS)  # the 5-epoch study's variants keep their definitions
    assert len(shared) == 4 and all(study.variants[k] == bench.VARIANTS[k] for k in shared)
    # the 24-epoch-only variants: one switch each on PGAN + global (proposals), and the detector's parts
    recommended = bench.VARIANTS["pgan, proposals, +global"]
    assert study.variants["pgan, proposals, +global, part dropout 0.25"] == {**recommended,
                                                                              "model.part_dropout": 0.25}
    assert study.variants["pgan, proposals, +global, entropy floor 0.8"] == {**recommended,
                                                                              "loss.entropy_floor": 0.8}
    assert study.variants["pgan, detector, +global"]["data.part_source"] == "detector"
    assert study.seed_plan["pgan, detector, +global"] == (0, 1, 2)
    assert study.seed_plan["baseline"] == bench.SEEDS_24
    for label, maps in (("baseline", (0.97, 0.98)), ("nopam, proposals, +global", (0.96, 0.97))):
        run = bench.run_dir(tmp_path, label, 0, study)
        run.mkdir(parents=True)
        attention = 0.2 if label != "baseline" else None
        history = [{"loss": 1.0}, {"loss": 0.5, "eval_mAP": maps[0], "eval_attention_max": attention},
                   {"loss": 0.4}, {"loss": 0.3, "eval_mAP": maps[1], "eval_attention_max": attention}]
        torch.save({"history": history}, run / "last.pt")
        (run / "result.json").write_text(json.dumps({"metrics": {"mAP": maps[1], "rank1": maps[1], "rank5": 1.0},
                                                     "train_seconds": 1.0}))
    # the halves diagnostic reads a real checkpoint; here its cache stands in for it
    (bench.run_dir(tmp_path, "nopam, proposals, +global", 0, study) / "halves.json").write_text(
        json.dumps({"mAP_all": 0.97, "mAP_global_half": 0.975, "mAP_fused_half": 0.95}))
    result = bench.summarise(tmp_path, list(study.variants), [0], study=study)
    base = next(r for r in result["rows"] if r["variant"] == "baseline")
    assert base["curve"] == [{"epoch": 2, "mAP": 0.97, "attention_max": None},
                             {"epoch": 4, "mAP": 0.98, "attention_max": None}]
    assert result["paired_mAP"]["nopam, proposals, +global - baseline"]["diffs"] == pytest.approx([-0.01])
    assert result["design"]["recipe"]["optim.epochs"] == 24
    png = bench.curve_figure(result, tmp_path / "curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert bench.curve_figure({"rows": [{"variant": "baseline"}]}, tmp_path / "none.png") is None


def test_a_summary_restricted_to_some_seeds_keeps_the_other_seeds_carried_rows(bench, tmp_path):
    # a session that trains only seeds 0-2 of new variants must not drop the table's seeds 3 and 4
    study = bench.STUDIES["24ep"]
    run = bench.run_dir(tmp_path, "baseline", 0, study)
    run.mkdir(parents=True)
    (run / "result.json").write_text(json.dumps({"metrics": {"mAP": 0.98, "rank1": 0.97, "rank5": 1.0},
                                                 "train_seconds": 1.0}))
    earlier = [{"variant": "baseline", "seed": s, "mAP": m, "rank1": 0.9, "rank5": 1.0, "train_seconds": 1.0}
               for s, m in ((0, 0.90), (3, 0.93), (4, 0.94))]
    result = bench.summarise(tmp_path, ["baseline"], [0], earlier, study)
    seeds = [(r["seed"], r.get("carried", False), r["mAP"]) for r in result["rows"]]
    assert seeds == [(0, False, 0.98), (3, True, 0.93), (4, True, 0.94)]  # seed 0 from its run folder
    assert result["summary"]["baseline"]["mAP_mean"] == pytest.approx((0.98 + 0.93 + 0.94) / 3)


def test_the_own_photo_recipe_is_the_24_epoch_study_s(bench):
    # configs/custom_*.yaml claim to be the measured real-photo recipe: the study's dict and pgan.recipes'
    # must not drift apart, and the configs' variants must be the study's rows they are named after.
    from pgan.recipes import CUSTOM_CPU, GENERATED

    assert bench.RECIPE_24 == CUSTOM_CPU
    assert GENERATED["custom_pgan"].changes == bench.VARIANTS_24["pgan, proposals, +global"]
    assert GENERATED["custom_baseline"].changes == bench.VARIANTS_24["baseline"]
