"""Rank lists, attention figures and attention statistics on a tiny trained checkpoint."""

import csv
import json
import math
import shutil
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from PIL import Image

from pgan.config import load_config
from pgan.data.records import ImageRecord
from pgan.engine.checkpoint import save_checkpoint
from pgan.models.build import build_network
from pgan.models.trained import load_checkpoint
from pgan.parts.boxfile import PartBox, read_part_file
from pgan.parts.selection import select_top_d
from pgan.utils.atomic import atomic_torch_save
from pgan.viz.attention import ImageAttention
from pgan.viz.attention_stats import attention_statistics
from pgan.viz.ranks import select_queries


def _cfg(root, out, variant):
    return load_config(None, [
        f"data.root={root}", "data.input_size=[64, 64]", "data.cache_images=true", "data.p=4", "data.k=4",
        "data.workers=1", "model.backbone=resnet18", "model.pretrained=false", f"model.variant={variant}",
        "model.reduced_dim=32", "optim.epochs=1", "optim.warmup_epochs=0", f"run.out_dir={out}",
        "run.progress=false"])


@pytest.fixture(scope="module")
def ckpts(tiny_synth, tmp_path_factory):
    """Checkpoints in the trainer's format (random weights: the figures need no trained model)."""
    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("viz_runs")
    out = {}
    for variant in ("pgan", "baseline"):
        cfg = _cfg(tiny_synth, base / variant, variant)
        model = build_network(cfg, num_classes=8)
        out[variant] = base / variant / "last.pt"
        save_checkpoint(out[variant], model=model.state_dict(), config=cfg.to_dict(), num_classes=8, epoch=1)
    return out


def _png(path, min_wh, max_wh):
    with Image.open(path) as im:
        im.load()
        w, h = im.size
    assert min_wh[0] <= w <= max_wh[0] and min_wh[1] <= h <= max_wh[1], (path, w, h)


def test_rank_pages_side_by_side(ckpts, tmp_path, run_cli):
    out = tmp_path / "ranks"
    assert run_cli("viz", "ranks", "--checkpoint", ckpts["pgan"], "--compare", ckpts["baseline"],
                   "--queries", 5, "--top-k", 3, "--out", out) == 0
    pages = sorted(p.name for p in out.glob("ranks_page*.png"))
    assert pages == ["ranks_page01.png", "ranks_page02.png"]  # 5 queries, 4 a page
    _png(out / pages[0], (700, 450), (1100, 700))  # query + 2 x 3 tiles, 4 rows
    summary = json.loads((out / "ranks.json").read_text())
    assert summary["models"][0].startswith("baseline") and summary["models"][1].startswith("pgan")
    assert len(summary["queries"]) == 5
    for q in summary["queries"]:
        assert len(q["models"]) == 2
        for m in q["models"]:
            assert len(m["top"]) == 3 and 0.0 <= m["ap"] <= 1.0
            # correct <=> same vehicle id (the id is the file name's first field)
            assert m["correct"] == [int(k.split("/")[-1][:4]) == q["pid"] for k in m["top"]]
            assert all(not (int(k.split("/")[-1][:4]) == q["pid"] and int(k.split("_c")[1][:3]) == q["camid"])
                       for k in m["top"])  # same vehicle, same camera is removed
    html = (out / "report.html").read_text()
    assert all(f"src='{p}'" in html for p in pages) and "ranks.json" in html


def test_rank_query_choice_and_errors(ckpts, tiny_synth, tmp_path, run_cli, capsys):
    out = tmp_path / "one"
    recs = [ImageRecord(tiny_synth / "image_query" / n, int(n[:4]), int(n[6:9]), f"image_query/{n}")
            for n in sorted(p.name for p in (tiny_synth / "image_query").glob("*.jpg"))]
    pid = recs[3].pid
    assert run_cli("viz", "ranks", "--checkpoint", ckpts["pgan"], "--query-ids", recs[0].key, str(pid),
                   "--out", out) == 0
    queries = json.loads((out / "ranks.json").read_text())["queries"]
    assert [q["key"] for q in queries][0] == recs[0].key and queries[1]["pid"] == pid
    _png(out / "ranks_page01.png", (600, 250), (800, 350))  # 2 rows, query + 5 tiles
    assert select_queries(recs, 3, seed=1) == select_queries(recs, 3, seed=1)  # seeded
    capsys.readouterr()
    assert run_cli("viz", "ranks", "--checkpoint", ckpts["pgan"], "--query-ids", "9999_nope.jpg",
                   "--out", out) == 2
    err = capsys.readouterr().err.strip()
    assert "'9999_nope.jpg' is not in the query set" in err and err.count("\n") == 0
    # a second checkpoint trained on other data cannot be compared
    other = tmp_path / "other_data"
    shutil.copytree(tiny_synth, other)
    ck = load_checkpoint(ckpts["baseline"])
    ck["config"]["data"]["root"] = str(other)
    atomic_torch_save(ck, tmp_path / "other.pt")
    assert run_cli("viz", "ranks", "--checkpoint", ckpts["pgan"], "--compare", tmp_path / "other.pt",
                   "--out", out) == 2
    assert "need the same query and gallery" in capsys.readouterr().err
    # an output folder that cannot be created
    (tmp_path / "afile").write_text("x")
    assert run_cli("viz", "ranks", "--checkpoint", ckpts["pgan"], "--out", tmp_path / "afile" / "sub") == 2
    assert "afile" in capsys.readouterr().err


def test_attention_figures(ckpts, tiny_synth, tmp_path, run_cli, capsys):
    parts = read_part_file(tiny_synth / "parts_gt.jsonl")
    keys = sorted(k for k in parts if k.startswith("image_query/"))[:2]
    out = tmp_path / "att"
    assert run_cli("viz", "attention", "--checkpoint", ckpts["pgan"], "--keys", *keys, "--out", out) == 0
    info = json.loads((out / "attention.json").read_text())
    assert [im["key"] for im in info["images"]] == keys
    for im in info["images"]:
        _png(out / im["figure"], (1000, 300), (1600, 500))
        selected = select_top_d(parts[im["key"]].boxes, 8)
        assert [p["label"] for p in im["parts"]] == [b.label for b in selected]
        assert math.isclose(sum(p["weight"] for p in im["parts"] if p["valid"]), 1.0, abs_tol=1e-5)
    html = (out / "report.html").read_text()
    assert all(f"src='{im['figure']}'" in html for im in info["images"])
    capsys.readouterr()
    assert run_cli("viz", "attention", "--checkpoint", ckpts["baseline"], "--num", 1, "--out", out) == 2
    assert "no part attention" in capsys.readouterr().err
    assert run_cli("viz", "attention", "--checkpoint", ckpts["pgan"], "--keys", "nope.jpg", "--out", out) == 2
    assert "'nope.jpg' is not in dataset" in capsys.readouterr().err
    # a part file without the image asked for
    lines = (tiny_synth / "parts_gt.jsonl").read_text().splitlines()
    (tmp_path / "parts.jsonl").write_text("\n".join(ln for ln in lines if keys[0] not in ln) + "\n")
    ck = load_checkpoint(ckpts["pgan"])
    ck["config"]["data"]["part_file"] = str(tmp_path / "parts.jsonl")
    atomic_torch_save(ck, tmp_path / "fewer_parts.pt")
    assert run_cli("viz", "attention", "--checkpoint", tmp_path / "fewer_parts.pt", "--keys", keys[0],
                   "--out", out) == 2
    err = capsys.readouterr().err
    assert "parts.jsonl" in err and keys[0] in err


def test_analyze_attention_numbers_add_up(ckpts, tiny_synth, tmp_path, run_cli):
    out = tmp_path / "stats"
    # the trainer logs the ratio at each evaluation; the analysis plots it over epochs
    (ckpts["pgan"].parent / "metrics.csv").write_text(
        "epoch,loss,eval_mAP,eval_attention_ratio\n1,5.0,,\n2,4.0,0.3,1.1\n3,3.5,0.4,1.4\n")
    from pgan.viz.attention_stats import read_ratio_curve
    assert read_ratio_curve(ckpts["pgan"].parent / "metrics.csv") == [(2, 1.1), (3, 1.4)]
    assert run_cli("analyze", "attention", "--checkpoint", ckpts["pgan"], "--split", "gallery",
                   "--out", out) == 0
    with open(out / "attention_parts.csv") as fh:
        parts_rows = list(csv.DictReader(fh))
    with open(out / "attention_classes.csv") as fh:
        class_rows = {r["class"]: r for r in csv.DictReader(fh)}
    # recount from the part file: the top-8 of every gallery image
    boxes = read_part_file(tiny_synth / "parts_gt.jsonl")
    gallery = [k for k in boxes if k.startswith("image_test/")]
    expected = Counter(b.label for k in gallery for b in select_top_d(boxes[k].boxes, 8))
    candidates = Counter(b.label for k in gallery for b in boxes[k].boxes)
    assert {c: int(r["selected"]) for c, r in class_rows.items() if int(r["selected"])} == dict(expected)
    assert {c: int(r["candidates"]) for c, r in class_rows.items()} == dict(candidates)
    assert sum(int(r["selected"]) for r in class_rows.values()) == len(parts_rows)
    per_image = defaultdict(list)
    for r in parts_rows:
        per_image[r["image"]].append(r)
    assert sorted(per_image) == sorted(gallery)
    for rows in per_image.values():
        valid = [float(r["weight"]) for r in rows if r["valid"] == "1"]
        assert math.isclose(sum(valid), 1.0, abs_tol=1e-4) and all(w >= 0 for w in valid)
        assert all(float(r["weight"]) == 0.0 for r in rows if r["valid"] == "0")
    assert math.isclose(sum(float(r["weight_share"]) for r in class_rows.values()), 1.0, abs_tol=1e-3)
    summary = (out / "summary.md").read_text()
    most = max(class_rows.values(), key=lambda r: int(r["selected"]))["class"]
    assert f"Most often selected: **{most}**" in summary and "least attended" in summary
    for name in ("selection_counts.png", "weight_distribution.png"):
        _png(out / name, (400, 250), (2000, 600))
        assert f"src='{name}'" in (out / "report.html").read_text()
    # The identity-vs-shared ratio, recomputed from the per-part CSV and the generator's roles.
    sel = {(k, i): b for k in gallery for i, b in enumerate(select_top_d(boxes[k].boxes, 8))}
    rel, rel_nw = defaultdict(list), defaultdict(list)
    for rows in per_image.values():
        n = sum(r["valid"] == "1" for r in rows)
        for r in rows:
            if r["valid"] == "1":
                b = sel[(r["image"], int(r["slot"]) - 1)]
                rel[b.role].append(float(r["weight"]) * n)
                if b.label != "wheel":
                    rel_nw[b.role].append(float(r["weight"]) * n)
    saved = json.loads((out / "attention_roles.json").read_text())
    assert saved["ratio"] == pytest.approx(np.mean(rel["identity"]) / np.mean(rel["shared"]), rel=1e-4)
    assert saved["without_wheels"]["ratio"] == pytest.approx(
        np.mean(rel_nw["identity"]) / np.mean(rel_nw["shared"]), rel=1e-4)
    assert "Identity vs shared parts: attention ratio" in summary
    _png(out / "attention_ratio_curve.png", (300, 200), (1000, 600))  # from the run's metrics.csv


def test_attention_statistics_pure():
    rec = ImageRecord(path=None, pid=1, camid=1, key="a.jpg")
    box = lambda label, s: PartBox(0, 0, 4, 4, s, label)  # noqa: E731
    items = [ImageAttention(rec, [box("wheel", 0.9), box("logo", 0.8), box("wheel", 0.5)],
                            ["wheel", "logo", "wheel", "plate"], np.array([0.5, 0.2, 0.3, 0.0]),
                            np.array([True, True, True, False])),
             ImageAttention(rec, [box("plate", 0.7), box("logo", 0.6)], ["plate", "logo"],
                            np.array([1.0, 0.0, 0.0, 0.0]), np.array([True, False, False, False]))]
    st = attention_statistics(items, num_parts=4)
    by = {c.label: c for c in st.classes}
    assert (by["wheel"].selected, by["logo"].selected, by["plate"].selected) == (2, 2, 1)
    assert (by["wheel"].candidates, by["plate"].candidates, by["wheel"].images) == (2, 2, 1)
    assert by["logo"].weights == [0.2] and by["wheel"].relative == pytest.approx([1.5, 0.9])
    assert st.total_selected == 5 and st.images_with_parts == 2 and st.max_sum_error < 1e-9
    rows = {r["class"]: r for r in st.csv_rows()}
    assert sum(float(r["weight_share"]) for r in rows.values()) == pytest.approx(1.0, abs=1e-3)
