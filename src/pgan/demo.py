"""``pgan demo``: the whole pipeline on a small synthetic benchmark, on a 2-core CPU, in under 5 minutes.

Generates a small synthetic near-twin benchmark (:data:`DEMO_QUICK_SYNTH`), trains ``baseline``
and ``pgan`` with the same backbone, budget (:data:`DEMO_RECIPE`) and seed on its ground-truth
part boxes, evaluates both (VeRi-776 cross-camera protocol) and writes into ``out_dir``:
``report.md``, ``report.json`` (``{variant: {"mAP", "rank1", "rank5"}}``, fractions) and
``ranklist.png``. Finished variants are kept: rerunning the demo after an interruption resumes
where it stopped.

The demo is a smoke test of the pipeline: its numbers come from one seed and a short budget,
and the gap between the variants moves from seed to seed. The comparison is made by the
benchmarks (3 seeds, larger set): see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from pgan.engine.train import train
from pgan.recipes import SYNTH_CPU, synth_cpu_config
from pgan.synth import generate_synth, synth_config_from_dict
from pgan.utils.atomic import atomic_write_json, atomic_write_text
from pgan.viz.ranklist import draw_rank_rows
from pgan.viz.ranks import load_run, rank_queries, rank_row, select_queries

__all__ = ["DEMO_QUICK_SYNTH", "DEMO_RECIPE", "DEMO_SYNTH", "SMOKE_NOTE", "demo_search", "rank_list_figure",
           "run_demo"]

log = logging.getLogger(__name__)

DEMO_SYNTH = {"num_train_ids": 160, "num_test_ids": 80, "images_per_id": (8, 12), "num_cameras": 8,
              "image_size": 160, "seed": 0}
"""The synthetic set of the benchmarks (``pgan bench ablation --dataset synth``, ``benchmarks/``)."""

# The demo's own, smaller set and budget, sized so `make demo` fits in 5 minutes on a 2-core CPU
# (measured: 218 s of CPU time with one thread for 48 steps, docs/demo_timing.json). The budget is
# about 54 steps: 4 epochs of about 13.5 steps (an epoch is one pass over the ~96 x 5.5 training images).
DEMO_QUICK_SYNTH = {**DEMO_SYNTH, "num_train_ids": 96, "num_test_ids": 48, "images_per_id": (6, 9)}
DEMO_RECIPE = {**SYNTH_CPU, "optim.epochs": 4, "optim.warmup_epochs": 0.5, "optim.milestones": (3,)}
SMOKE_NOTE = ("One seed and a short budget: these numbers are a smoke test of the pipeline, not a "
              "comparison of the variants. For that, see the benchmarks (3 seeds): docs/benchmarks.md.")


def _report_md(results: dict) -> str:
    lines = ["# pgan demo: synthetic near-twin benchmark", "",
             "Same backbone (MobileNetV2, ImageNet), budget and seed for each variant; VeRi-776 "
             "cross-camera protocol; ground-truth part boxes.", "", SMOKE_NOTE, "",
             "| variant | mAP | Rank-1 | Rank-5 | train time (s) |", "|---|---|---|---|---|"]
    for variant, r in results.items():
        lines.append(f"| {variant} | {100 * r['mAP']:.1f} | {100 * r['rank1']:.1f} | {100 * r['rank5']:.1f} "
                     f"| {r['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def rank_list_figure(checkpoint: Path, out_png: Path, num_queries: int = 4, k: int = 5, seed: int = 0) -> Path:
    """Top-``k`` rank lists of a few random queries for a trained checkpoint."""
    run = load_run(checkpoint)
    queries = select_queries(run.dataset.query, num_queries, seed=seed)
    rows = [rank_row(r) for r in rank_queries(run, queries, k, torch.device("cpu"))]
    title = f"{run.cfg.model.variant}: query (blue) and top-{k} gallery, green = same vehicle, red = different"
    return draw_rank_rows(rows, out_png, title=title)


def run_demo(out_dir: str | Path = "runs/demo", data_dir: str | Path = "data/demo",
             variants: tuple[str, ...] = ("baseline", "pgan"), seed: int = 0, epochs: int | None = None,
             synth_overrides: dict | None = None, progress: bool = True) -> dict:
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    synth_cfg = synth_config_from_dict({**DEMO_QUICK_SYNTH, **(synth_overrides or {})})
    generate_synth(data_dir, synth_cfg, progress=progress)
    results: dict[str, dict] = {}
    for variant in variants:
        run_dir = out_dir / variant
        done = run_dir / "result.json"
        if done.is_file():
            log.info("%s already trained (%s); reusing its result", variant, done)
            res = json.loads(done.read_text())
        else:
            extra = {"optim__epochs": epochs} if epochs is not None else {}
            cfg = synth_cpu_config(variant, str(data_dir), str(run_dir), seed, recipe=DEMO_RECIPE,
                                   run__progress=progress, **extra)
            res = train(cfg, resume=(run_dir / "last.pt").is_file())
        results[variant] = {**res["metrics"], "train_seconds": res["train_seconds"]}
    report = {v: {"mAP": r["mAP"], "rank1": r["rank1"], "rank5": r["rank5"]} for v, r in results.items()}
    atomic_write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", _report_md(results))
    best = "pgan" if "pgan" in variants else variants[-1]
    rank_list_figure(out_dir / best / "last.pt", out_dir / "ranklist.png", seed=seed)
    search = demo_search(out_dir / best / "last.pt", data_dir, out_dir, progress=progress)
    if search is not None:
        report["search"] = search
        atomic_write_json(out_dir / "report.json", report)
        atomic_write_text(out_dir / "report.md", _report_md(results) + _search_md(search))
    return report


def demo_search(checkpoint: Path, data_dir: Path, out_dir: Path, topk: int = 5,
                progress: bool = True) -> dict | None:
    """Index the demo's test gallery and search it with every query photo: ``out_dir/gallery`` (the index),
    ``search.png`` (four queries and their top-``topk``) and the share of queries whose vehicle is in the
    top-``topk``. Skipped, with a message, when faiss (the ``[search]`` extra) is not installed."""
    try:  # an optional dependency: the demo's training and evaluation do not need it
        from pgan.index import build_index
        from pgan.index.search import draw_results, search_images
    except ImportError as exc:
        log.warning("gallery search skipped (%s); pip install 'pgan[search]' to add it", exc)
        return None
    index_dir = out_dir / "gallery"
    build = build_index(data_dir / "image_test", index_dir, checkpoint=checkpoint, progress=progress)
    queries = sorted((data_dir / "image_query").glob("*.jpg"))
    results = search_images(index_dir, queries, topk=topk)
    found = [any(h.vehicle_id == int(Path(r.query).name[:4]) for h in r.hits) for r in results]
    first = [bool(r.hits) and r.hits[0].vehicle_id == int(Path(r.query).name[:4]) for r in results]
    draw_results(results[:4], out_dir / "search.png")
    return {"index": str(index_dir), "gallery": build.total,
            "queries": len(results), f"top{topk}_same_vehicle": sum(found) / max(len(found), 1),
            "top1_same_vehicle": sum(first) / max(len(first), 1), "figure": str(out_dir / "search.png")}


def _search_md(search: dict) -> str:
    k = next(key for key in search if key.startswith("top") and key != "top1_same_vehicle")
    return (f"\n## Search a gallery\n\nIndex `{search['index']}` of the test gallery; each of the "
            f"{search['queries']} query photos searched it: the same vehicle came first for "
            f"{100 * search['top1_same_vehicle']:.1f}% and was in the {k.replace('_same_vehicle', '')} for "
            f"{100 * search[k]:.1f}% (same-camera images included; `search.png` shows four).\n")
