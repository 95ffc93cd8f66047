"""Real photos: the part box head (``model.box_head``) against the proposals it learns from, paired.

Trains the own-photo recipe (``configs/custom_pgan.yaml``: PGAN + global branch on saliency proposals,
24 epochs, the real-dev study's ``RECIPE_24``) with ``model.box_head=true`` on real-dev ``train.txt``, one
run per seed, and evaluates each trained model on ``val.txt`` (query cam1, gallery cam2) twice with the
same weights: parts from the proposals (what ``pgan eval`` and the study report) and parts from the
model's own box head. The head sees a detached feature map and is built from its own random state, so
the re-ID weights are those of the same seed without the head: the proposals figure should repeat the
24-epoch study's ``pgan, proposals, +global`` row for that seed (``docs/real_dev_24ep.json``), which the
JSON carries beside it.

Per seed also: how well the head's boxes overlap the proposals' top-8 on val (mean best IoU of each
proposal with any head box, of each head box with any proposal, and the same with the head boxes of
another photo as the chance level) and the CPU milliseconds per photo (one thread, one photo at a time) of
the proposals, of the head's extra work (head, decoding, masks) and of the whole network with each part
source.

``--onnx-timing`` (once, on the first finished seed's model) times what the service runs per photo, one
thread, batch 1, decoding included: the int8 ONNX export of the model without its head (weights equal)
with proposals, against the int8 export of the box-head model (images in, embedding and boxes out).

Resumable: each seed's run folder resumes, and each finished seed writes ``<out>/results/seed_<n>.json``
(skipped next time). ``--workers N`` runs N one-thread processes that share the seeds. Writes
``docs/box_head.json`` and ``docs/box_head.md``.

    python benchmarks/box_head.py --root ../shared/real-dev --seeds 0 1 2 --workers 2
    python benchmarks/box_head.py --root ../shared/real-dev --summarise-only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pgan.bench.ablation import claim_run
from pgan.bench.paired import t_interval
from pgan.data.build import read_configured_dataset
from pgan.engine.build import build_eval_sets, build_loader, build_part_source
from pgan.engine.extract import extract_features
from pgan.engine.train import train
from pgan.evaluation import evaluate_protocol
from pgan.inference.images import decode, network_input
from pgan.models.build import mask_size
from pgan.models.trained import load_trained
from pgan.parts.boxfile import read_part_file
from pgan.parts.masks import boxes_to_masks
from pgan.parts.proposals import propose_boxes
from pgan.parts.selection import select_top_d
from pgan.recipes import CUSTOM_CPU, synth_cpu_config
from pgan.utils.atomic import atomic_write_json, atomic_write_text
from real_dev import write_csv, write_part_files  # benchmarks/ is on sys.path when this script runs

# The recipe of configs/custom_pgan.yaml and of the 24-epoch study's "pgan, proposals, +global" row, with
# its evaluation every 4 epochs (the study's; evaluating draws a DataLoader seed, so the same schedule keeps
# the same data order), plus the box head.
CHANGES = {"model.variant": "pgan", "data.part_source": "proposals", "model.global_branch": True,
           "model.box_head": True}
EVAL_EVERY = 4
STUDY_ROW = "pgan, proposals, +global"


def run_dir(out: Path, seed: int) -> Path:
    return out / "runs" / f"box_head_s{seed}"


def config_for(seed: int, csv_path: Path, out: Path, epochs: int | None):
    extra = {k.replace(".", "__"): v for k, v in CHANGES.items()}
    if epochs:
        extra["optim__epochs"] = epochs
    return synth_cpu_config("pgan", str(csv_path), str(run_dir(out, seed)), seed=seed, recipe=CUSTOM_CPU,
                            data__part_cache=str(out / "parts"), run__progress=False, run__eval_every=EVAL_EVERY,
                            **extra)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` IoU of boxes ``(n, 4)`` x1, y1, x2, y2."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-12)


def overlap(head: list[np.ndarray], props: list[np.ndarray]) -> dict:
    """Mean best IoU of each proposal with any head box (``proposal_recall_iou``) and of each head box with
    any proposal (``head_precision_iou``), over every box of every photo; ``chance_*``: the same against the
    head boxes of the next photo (a photo's proposals against another photo's head boxes)."""
    def both(hs: list[np.ndarray]) -> tuple[float, float]:
        rec = [box_iou(p, h).max(1) if len(h) else np.zeros(len(p)) for h, p in zip(hs, props)]
        pre = [box_iou(h, p).max(1) if len(p) else np.zeros(len(h)) for h, p in zip(hs, props)]
        mean = lambda xs: float(np.concatenate(xs).mean()) if xs else 0.0  # noqa: E731
        return mean(rec), mean(pre)

    own, other = both(head), both(head[1:] + head[:1])
    return {"proposal_recall_iou": own[0], "head_precision_iou": own[1], "chance_proposal_recall_iou": other[0],
            "chance_head_precision_iou": other[1], "head_boxes_per_photo": float(np.mean([len(h) for h in head])),
            "proposals_per_photo": float(np.mean([len(p) for p in props]))}


def cell_overlap(head_masks: list[np.ndarray], prop_masks: list[np.ndarray]) -> dict:
    """What the network is given, compared: per photo, the IoU of the cells that any head mask switches on
    with the cells any proposal mask switches on (``(D, h, w)`` masks, union over parts), its mean over the
    photos (``cell_iou``) and the same against the next photo's head masks (``chance_cell_iou``); also the
    share of cells each marks."""
    def union(m: np.ndarray) -> np.ndarray:
        return m.reshape(m.shape[0], -1).max(0) > 0

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        both = np.logical_or(a, b).sum()
        return float(np.logical_and(a, b).sum() / both) if both else 1.0

    heads, props = [union(m) for m in head_masks], [union(m) for m in prop_masks]
    return {"cell_iou": float(np.mean([iou(h, p) for h, p in zip(heads, props)])),
            "chance_cell_iou": float(np.mean([iou(h, p) for h, p in zip(heads[1:] + heads[:1], props)])),
            "head_cells_share": float(np.mean(heads)), "proposal_cells_share": float(np.mean(props))}


def overlap_only(model, cfg, ds, out: Path) -> dict:
    """:func:`overlap` and :func:`cell_overlap` of one loaded trained model on val (no mAP; a few seconds)."""
    part_items = {Path(k).name: v for k, v in read_part_file(out / "parts" / "parts_proposals.jsonl").items()}
    d, size = cfg.data.num_parts, tuple(cfg.data.input_size)
    msize = mask_size(model, size)
    head, props, head_masks, prop_masks = [], [], [], []
    with torch.no_grad():
        for rec in [*ds.query, *ds.gallery]:
            item = part_items[Path(rec.path).name]
            top = select_top_d(item.boxes, d)
            scale = np.array([item.width, item.height] * 2, dtype=np.float64)
            props.append(np.array([[b.x1, b.y1, b.x2, b.y2] for b in top]).reshape(-1, 4) / scale)
            prop_masks.append(boxes_to_masks(top, item.width, item.height, msize[0], msize[1], d,
                                             mode=cfg.data.mask_mode))
            masks, hb, scores = model.part_box_head.decoder(
                model.part_box_head(model.forward_features(network_input(decode(rec.path), size)[None])), msize)
            head.append(hb[0][scores[0] > 0].numpy().astype(np.float64))
            head_masks.append(masks[0].numpy())
    sizes = np.concatenate([p[:, 2:] - p[:, :2] for p in props])
    return {**overlap(head, props), **cell_overlap(head_masks, prop_masks), "mask_grid": list(msize),
            "proposal_size_median": [float(v) for v in np.median(sizes, axis=0)]}


def evaluate_seed(rd: Path, out: Path) -> dict:
    """Val mAP with the proposals' and with the head's masks (same weights), box overlap and CPU timings."""
    model, cfg = load_trained(rd / "last.pt")
    cfg.run.progress = False
    cfg.data.workers = 0
    ds = read_configured_dataset(cfg)
    sets = build_eval_sets(cfg, ds, build_part_source(cfg), mask_size(model, tuple(cfg.data.input_size)))
    device = torch.device("cpu")
    res: dict = {}
    for name, from_head in (("proposals", False), ("head", True)):
        model.parts_from_head = from_head
        feats = [extract_features(model, build_loader(s, cfg, batch_size=64, shuffle=False), device, False, False
                                  ).feats for s in (sets.query, sets.gallery)]
        metrics = evaluate_protocol("custom", feats[0], feats[1], sets.query.records, sets.gallery.records).metrics
        res[f"mAP_{name}"], res[f"rank1_{name}"] = float(metrics["mAP"]), float(metrics["rank1"])
    model.parts_from_head = False
    d, size = cfg.data.num_parts, tuple(cfg.data.input_size)
    msize = mask_size(model, size)
    t_prop, t_masks, t_own, t_extra = [], [], [], []
    with torch.no_grad():
        for rec in [*ds.query, *ds.gallery]:
            im = decode(rec.path)
            t0 = time.perf_counter()
            select_top_d(propose_boxes(im.rgb), d)  # what the service does per photo
            t_prop.append(time.perf_counter() - t0)
            x = network_input(im, size)[None]
            fmap = model.forward_features(x)
            t0 = time.perf_counter()
            masks = model.part_box_head.decoder(model.part_box_head(fmap), msize)[0]
            t_extra.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model(x, masks)
            t_masks.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            model(x)
            t_own.append(time.perf_counter() - t0)
    ms = lambda t: 1000.0 * float(np.median(t))  # noqa: E731
    res.update(overlap_only(model, cfg, ds, out))
    res.update({"cpu_ms_proposals": ms(t_prop), "cpu_ms_head_extra": ms(t_extra),
                "cpu_ms_network_given_masks": ms(t_masks), "cpu_ms_network_head_parts": ms(t_own),
                "cpu_ms_photos": len(t_prop), "torch_threads": torch.get_num_threads(),
                "load_average_1min": os.getloadavg()[0]})  # timings on a busy 2-core machine are slower
    return res


def onnx_timing(out: Path, calibration: int = 64, photos: int = 100) -> dict:
    """Per-photo CPU ms of the service's path (``FeatureExtractor.extract_with_parts``, int8 ONNX, one
    thread, batch 1): proposals + the model without its head, and the box-head model alone."""
    import onnxruntime as ort

    from pgan.inference import FeatureExtractor, export_onnx, quantize_int8

    done = sorted((out / "results").glob("seed_*.json"))
    if not done:
        raise SystemExit("--onnx-timing needs a finished seed")
    seed = json.loads(done[0].read_text())["seed"]
    ckpt_path = run_dir(out, seed) / "last.pt"
    ckpt = torch.load(ckpt_path, weights_only=False)
    plain = {**ckpt, "model": {k: v for k, v in ckpt["model"].items() if not k.startswith("part_box_head.")},
             "config": {**ckpt["config"], "model": {**ckpt["config"]["model"], "box_head": False}}}
    work_dir = out / "onnx"
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.save(plain, work_dir / "plain.pt")
    cfg = load_trained(ckpt_path)[1]
    ds = read_configured_dataset(cfg)
    calib = [r.path for r in ds.train[:calibration]]
    val = [r.path for r in [*ds.query, *ds.gallery]][:photos]
    row: dict = {"seed": seed, "photos": len(val), "onnxruntime": ort.__version__}
    for name, source, parts in (("proposals_plus_int8", work_dir / "plain.pt", "proposals"),
                                ("box_head_int8", ckpt_path, None)):
        fp32 = export_onnx(source, work_dir / f"{name}.onnx")
        q = quantize_int8(fp32, work_dir / f"{name}-int8.onnx", calib, parts=parts)
        fx = FeatureExtractor(q, parts=parts, runtime="onnx", device="cpu", batch_size=1, threads=1)
        fx.extract_with_parts(val[:5])  # warm-up
        times = []
        for path in val:
            t0 = time.perf_counter()
            fx.extract_with_parts([path])
            times.append(time.perf_counter() - t0)
        row[f"cpu_ms_{name}"] = 1000.0 * float(np.median(times))
    row["load_average_1min"] = os.getloadavg()[0]
    atomic_write_json(out / "results" / "onnx_timing.json", row)
    return row


def result_path(out: Path, seed: int) -> Path:
    return out / "results" / f"seed_{seed}.json"


def work(csv_path: Path, out: Path, seeds: list[int], epochs: int | None) -> None:
    """Train and evaluate every unfinished seed this worker can claim."""
    torch.set_num_threads(1)
    for seed in seeds:
        rd = run_dir(out, seed)
        if result_path(out, seed).is_file() or not claim_run(rd):
            continue
        try:
            if not (rd / "result.json").is_file():
                train(config_for(seed, csv_path, out, epochs), (rd / "last.pt").is_file())
            trained = json.loads((rd / "result.json").read_text())
            row = {"seed": seed, "epochs": trained["epochs"], "train_seconds": trained["train_seconds"],
                   "mAP_pgan_eval": trained["metrics"]["mAP"], **evaluate_seed(rd, out)}
            atomic_write_json(result_path(out, seed), row)
            logging.info("seed %d: mAP proposals %.4f, head %.4f", seed, row["mAP_proposals"], row["mAP_head"])
        finally:
            (rd / ".claim").unlink(missing_ok=True)


def evaluate_unfinished(out: Path, seeds: list[int]) -> None:
    """The same evaluation on the latest checkpoint of seeds still training (``--unfinished``): written to
    ``results/unfinished_seed_<n>.json`` with the epochs done, and tabulated apart from finished seeds."""
    torch.set_num_threads(1)
    for seed in seeds:
        rd = run_dir(out, seed)
        if result_path(out, seed).is_file() or not (rd / "last.pt").is_file():
            continue
        done = int(torch.load(rd / "last.pt", weights_only=False)["epoch"])
        row = {"seed": seed, "epochs_done": done, **evaluate_seed(rd, out)}
        atomic_write_json(out / "results" / f"unfinished_seed_{seed}.json", row)
        logging.info("seed %d after %d epochs: mAP proposals %.4f, head %.4f", seed, done, row["mAP_proposals"],
                     row["mAP_head"])


def summarise(out: Path, docs: Path) -> dict:
    rows = [json.loads(p.read_text()) for p in sorted((out / "results").glob("seed_*.json"))]
    finished = {r["seed"] for r in rows}
    unfinished = [r for p in sorted((out / "results").glob("unfinished_seed_*.json"))
                  if (r := json.loads(p.read_text()))["seed"] not in finished]
    timing = out / "results" / "onnx_timing.json"
    study = docs / "real_dev_24ep.json"
    earlier = {r["seed"]: r["mAP"] for r in json.loads(study.read_text())["rows"]
               if r["variant"] == STUDY_ROW} if study.is_file() else {}
    for r in rows:
        r["mAP_study_same_seed"] = earlier.get(r["seed"])
    summary: dict = {"seeds": [r["seed"] for r in rows]}
    for key in ("mAP_proposals", "mAP_head", "proposal_recall_iou", "head_precision_iou",
                "chance_proposal_recall_iou", "chance_head_precision_iou", "head_boxes_per_photo",
                "cell_iou", "chance_cell_iou", "head_cells_share", "proposal_cells_share",
                "cpu_ms_proposals", "cpu_ms_head_extra", "cpu_ms_network_given_masks",
                "cpu_ms_network_head_parts"):
        vals = [r[key] for r in rows if r.get(key) is not None]
        if vals:
            summary[f"{key}_mean"], summary[f"{key}_std"] = float(np.mean(vals)), float(np.std(vals))
    diffs = [r["mAP_head"] - r["mAP_proposals"] for r in rows]
    if diffs:
        summary["mAP_head_minus_proposals"] = {"diffs": diffs, "mean": float(np.mean(diffs)),
                                               "ci95": list(t_interval(diffs)) if len(diffs) > 1 else None}
    study_all = [r["mAP"] for r in json.loads(study.read_text())["rows"] if r["variant"] == STUDY_ROW] \
        if study.is_file() else []
    if study_all:
        summary["study_row_all_seeds"] = {"mean": float(np.mean(study_all)), "std": float(np.std(study_all)),
                                          "min": float(min(study_all)), "max": float(max(study_all)),
                                          "n": len(study_all)}
    return {"design": {"recipe": "configs/custom_pgan.yaml (RECIPE_24) + model.box_head=true",
                       "changes": CHANGES, "eval_every": EVAL_EVERY,
                       "split": "real-dev train.txt -> val.txt (query cam1, gallery cam2)",
                       "paired": "each seed's one model evaluated with proposal masks and with its own head's"},
            "rows": rows, "summary": summary, "unfinished": unfinished,
            "onnx_timing": json.loads(timing.read_text()) if timing.is_file() else None}


def cell(r: dict) -> str:
    return f"{r['cell_iou']:.2f} ({r['chance_cell_iou']:.2f})" if "cell_iou" in r else "–"


def markdown(result: dict) -> str:
    s = result["summary"]
    pct = lambda k: f"{100 * s[k + '_mean']:.1f} ± {100 * s[k + '_std']:.1f}" if k + "_mean" in s else "–"  # noqa
    lines = ["| seed | val mAP, proposals (%) | val mAP, head boxes (%) | head - proposals | same seed in the "
             "24-epoch study (%) | cell IoU (chance) | proposal recall IoU (chance) | "
             "head precision IoU (chance) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        study = f"{100 * r['mAP_study_same_seed']:.2f}" if r.get("mAP_study_same_seed") is not None else "–"
        lines.append(f"| {r['seed']} | {100 * r['mAP_proposals']:.2f} | {100 * r['mAP_head']:.2f} | "
                     f"{100 * (r['mAP_head'] - r['mAP_proposals']):+.2f} | {study} | {cell(r)} | "
                     f"{r['proposal_recall_iou']:.2f} ({r['chance_proposal_recall_iou']:.2f}) | "
                     f"{r['head_precision_iou']:.2f} ({r['chance_head_precision_iou']:.2f}) |")
    lines += ["", f"Mean over seeds {s['seeds']}: proposals {pct('mAP_proposals')}, head boxes {pct('mAP_head')}."]
    if "mAP_head_minus_proposals" in s:
        d = s["mAP_head_minus_proposals"]
        ci = f" [{100 * d['ci95'][0]:+.2f}, {100 * d['ci95'][1]:+.2f}]" if d["ci95"] else ""
        lines.append(f"Paired difference head - proposals: {100 * d['mean']:+.2f} mAP{ci}.")
    if "study_row_all_seeds" in s:
        st = s["study_row_all_seeds"]
        lines.append(f"The 24-epoch study's row over its {st['n']} seeds: {100 * st['mean']:.1f} ± "
                     f"{100 * st['std']:.1f} (range {100 * st['min']:.1f}-{100 * st['max']:.1f}).")
    if "cell_iou_mean" in s:
        r0 = result["rows"][0]
        lines.append(f"Cells marked as parts on the {r0['mask_grid'][0]} x {r0['mask_grid'][1]} mask grid: "
                     f"{100 * s['head_cells_share_mean']:.0f}% by the head, "
                     f"{100 * s['proposal_cells_share_mean']:.0f}% by the proposals; a median proposal is "
                     f"{100 * r0['proposal_size_median'][0]:.1f}% x {100 * r0['proposal_size_median'][1]:.1f}% "
                     f"of the photo, smaller than one cell, so a box-level IoU with the head's boxes (at least "
                     f"half a backbone-grid cell wide) stays low even where "
                     f"both switch on the same cells; the cell IoU is what the network sees. The head's cells "
                     f"match the proposals' of the same photo with IoU {s['cell_iou_mean']:.2f}, another photo's "
                     f"with {s['chance_cell_iou_mean']:.2f}.")
        if s["cell_iou_mean"] - s["chance_cell_iou_mean"] < 0.1 and "mAP_head_minus_proposals" in s:
            lines.append("The head has barely learnt where the proposals are, yet val mAP with its boxes is that "
                         "with the proposals': this model's ranking hardly depends on where its part masks are "
                         "(most likely its global branch carries it; not measured here).")
    if "cpu_ms_proposals_mean" in s:
        lines.append(f"CPU per photo (one thread, median): proposals {s['cpu_ms_proposals_mean']:.1f} ms; the "
                     f"head's extra work (head, decoding, masks) {s['cpu_ms_head_extra_mean']:.2f} ms; the "
                     f"whole network {s['cpu_ms_network_given_masks_mean']:.1f} ms with masks given, "
                     f"{s['cpu_ms_network_head_parts_mean']:.1f} ms with the head's parts (PyTorch).")
    for r in result.get("unfinished", []):
        lines.append(f"Seed {r['seed']} had not finished (its checkpoint after {r['epochs_done']} of 24 epochs, "
                     f"evaluated the same way): proposals {100 * r['mAP_proposals']:.2f}, head boxes "
                     f"{100 * r['mAP_head']:.2f} ({100 * (r['mAP_head'] - r['mAP_proposals']):+.2f}); proposal "
                     f"recall IoU {r['proposal_recall_iou']:.2f} (chance {r['chance_proposal_recall_iou']:.2f}).")
    t = result.get("onnx_timing")
    if t:
        lines.append(f"The service's path per photo (int8 ONNX, one thread, batch 1, JPEG decoding included; seed "
                     f"{t['seed']}'s model, {t['photos']} val photos, median): proposals + the model without its "
                     f"head {t['cpu_ms_proposals_plus_int8']:.1f} ms; the box-head model alone "
                     f"{t['cpu_ms_box_head_int8']:.1f} ms.")
    return "\n".join(lines) + "\n"


DOC_HEAD = """# The part box head on real photos

Written by `python benchmarks/box_head.py --root ../shared/real-dev` (raw figures:
[box_head.json](box_head.json)). The own-photo recipe (`configs/custom_pgan.yaml`: PGAN + global branch on
saliency proposals, MobileNetV2 at 160 px, 24 epochs) with `model.box_head=true`, trained on real-dev
train; each seed's model is evaluated on val twice with the same weights: part masks from the proposals,
and part masks from the model's own box head (`--parts model`, what the service uses then, with no
proposals step). The head is trained on a detached feature map, so the proposals column repeats the
24-epoch study's row for the same seed ([real_dev_24ep.md](real_dev_24ep.md)). *Recall IoU*: each
proposal's best IoU with a head box (top-8 proposals); *precision IoU*: each head box's best IoU with a
proposal; *cell IoU*: per photo, the cells of the part-mask grid that any head mask switches on against
those any proposal mask does (what the network is given); in brackets the same against another photo's
head boxes (chance).

"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the real-dev folder (images/, train.txt, val.txt)")
    ap.add_argument("--out", default="runs/box_head")
    ap.add_argument("--docs", default="docs", help="where box_head.json / box_head.md go")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe (a quick look, not the table)")
    ap.add_argument("--workers", type=int, default=1, help="one-thread processes sharing the seeds")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--onnx-timing", action="store_true", help="time the int8 service paths, then summarise")
    ap.add_argument("--overlap", action="store_true",
                    help="recompute the box and cell overlap of finished seeds (no mAP, seconds), then summarise")
    ap.add_argument("--unfinished", action="store_true",
                    help="evaluate the latest checkpoint of seeds still training (kept apart), then summarise")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    root, out = Path(args.root).resolve(), Path(args.out).resolve()
    csv_path = out / "real_dev.csv"
    if args.worker:
        work(csv_path, out, args.seeds, args.epochs)
        return
    if args.onnx_timing:
        torch.set_num_threads(1)
        onnx_timing(out)
    elif args.overlap:
        torch.set_num_threads(1)
        for seed in args.seeds:
            if result_path(out, seed).is_file():
                row = json.loads(result_path(out, seed).read_text())
                model, cfg = load_trained(run_dir(out, seed) / "last.pt")
                overlaps = overlap_only(model, cfg, read_configured_dataset(cfg), out)
                atomic_write_json(result_path(out, seed), {**row, **overlaps})
    elif args.unfinished:
        evaluate_unfinished(out, args.seeds)
    elif not args.summarise_only:
        if not (root / "train.txt").is_file() or not (root / "val.txt").is_file():
            raise SystemExit(f"{root} is not the real-dev folder (needs train.txt, val.txt and images/)")
        write_csv(root, out)
        write_part_files(csv_path, out / "parts", False, ("proposals",))
        cmd = [sys.executable, __file__, "--worker", "--root", str(root), "--out", str(out),
               "--seeds", *map(str, args.seeds)] + (["--epochs", str(args.epochs)] if args.epochs else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs = [subprocess.Popen(cmd, env=env) for _ in range(max(1, args.workers))]
        if any(p.wait() for p in procs):
            logging.warning("a worker failed; the table covers the finished seeds")
    docs = Path(args.docs)
    result = summarise(out, docs)
    md = markdown(result)
    atomic_write_json(docs / "box_head.json", result)
    atomic_write_text(docs / "box_head.md", DOC_HEAD + md)
    print(md)


if __name__ == "__main__":
    main()
