"""Part detector on the synthetic benchmark: train on image_train, AP@0.5 on query+test, CPU throughput.

Trains ``pgan parts train``'s detector within a wall-clock budget on the training split's VOC boxes,
evaluates box AP@0.5 per class on the held-out query and gallery images' boxes, measures extraction
throughput (images/s) and writes the detector's part file for the whole dataset
(``<data>/parts_det.jsonl``, used by ``benchmarks/part_sources.py``). Everything resumes: the detector
continues from ``<out>/last.pt`` within the same total budget, the part file from its last line.

Writes ``<out>/part_detector.json`` and ``<out>/part_detector.md``.

    python benchmarks/part_detector.py                      # the README figure (30 min of training)
    python benchmarks/part_detector.py --minutes 2 --threads 1 --out runs/bench/part_detector_2min
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from pgan.detection.data import label_set, read_voc
from pgan.detection.extract import detector_boxes_fn, extract_parts
from pgan.detection.model import DetectorConfig, evaluate_detector, load_detector
from pgan.detection.train import TrainSettings, train_detector
from pgan.parts import PART_CLASSES
from pgan.parts.extract import dataset_images, run_extraction
from pgan.synth import generate_synth, synth_config_from_dict
from pgan.utils.atomic import atomic_write_json, atomic_write_text
from synth_variants import BENCH_SYNTH  # the sibling script (a script's folder is on sys.path)


def ensure_data(root: str, progress: bool) -> Path:
    """Use the synthetic dataset at ``root`` as it is, or generate the benchmark's one there."""
    path = Path(root)
    if not (path / "synth_meta.json").is_file():
        generate_synth(path, synth_config_from_dict(BENCH_SYNTH), progress=progress)
    return path


def throughput(checkpoint: Path, data: Path, n: int, batch_size: int, device: str) -> float:
    """Extraction images/s (decode + detect + top-D + write) on ``n`` gallery images."""
    model, cfg, _ = load_detector(checkpoint, device)
    records = dataset_images("synth", data)[-n:]
    fn = detector_boxes_fn(model, cfg.classes, 8, 0.45, 0.05)
    fn([torch.zeros(3, 64, 64, dtype=torch.uint8)])  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        rep = run_extraction(records, Path(tmp) / "p.jsonl", fn, batch_size, progress=False)
    return rep.images_per_s


def run(args: argparse.Namespace) -> dict:
    data = ensure_data(args.data, args.progress)
    out = Path(args.out)
    voc = data / "annotations_voc"
    train_samples, _ = read_voc([voc / "image_train"])
    held_out, _ = read_voc([voc / "image_query", voc / "image_test"], keep_empty=True)
    settings = TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, minutes=args.minutes,
                             seed=args.seed, device=args.device, progress=args.progress)
    ckpt = out / "last.pt"
    t0 = time.perf_counter()
    # the paper's 16 part classes in their usual order, then any other class the set's annotations hold (the
    # hard synthetic setting adds shared distractor parts such as fog lights); `pgan parts train --classes
    # auto` holds the same classes, sorted by name
    classes = list(PART_CLASSES) + sorted(set(label_set(train_samples)) - set(PART_CLASSES))
    res = train_detector(train_samples, out, settings, DetectorConfig(classes=classes), resume=ckpt.is_file())
    logging.info("trained %d steps (%d epochs) in %.0f s", res["steps"], res["epochs_done"], res["train_seconds"])
    model, cfg, _ = load_detector(ckpt, args.device)
    limit = held_out[: args.eval_limit] if args.eval_limit else held_out
    t_eval = time.perf_counter()
    ap = evaluate_detector(model, cfg.classes, limit, progress=args.progress)
    eval_seconds = time.perf_counter() - t_eval
    ips = throughput(ckpt, data, args.throughput_images, args.batch_size, args.device)
    result = {"mAP50": ap.mean, "per_class_AP50": ap.per_class, "num_gt": ap.num_gt,
              "held_out_images": len(limit), "train_images": len(train_samples),
              "train_seconds": res["train_seconds"], "budget_minutes": args.minutes, "steps": res["steps"],
              "epochs_done": res["epochs_done"], "extract_images_per_s": ips, "eval_seconds": eval_seconds,
              "device": args.device, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
              "machine": platform.machine()}
    if not args.skip_extract:
        rep = extract_parts(ckpt, "synth", data, data / "parts_det.jsonl", progress=args.progress,
                            device=args.device, batch_size=args.batch_size)
        result["part_file"] = rep.out
    result["wall_seconds"] = time.perf_counter() - t0
    return result


def table(r: dict) -> str:
    lines = [f"Part detector (Faster R-CNN, MobileNetV2-FPN) after {r['train_seconds'] / 60:.1f} min of "
             f"training ({r['steps']} steps, {r['train_images']} images, {r['threads']} CPU threads): "
             f"**mAP@0.5 {100 * r['mAP50']:.1f}** on {r['held_out_images']} held-out images; extraction "
             f"{r['extract_images_per_s']:.1f} images/s ({1000 / max(r['extract_images_per_s'], 1e-9):.0f} "
             f"ms/image) on {r['device']}.", "", "| class | AP@0.5 (%) | boxes |", "|---|---|---|"]
    for cls, ap in sorted(r["per_class_AP50"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {cls} | {100 * ap:.1f} | {r['num_gt'][cls]} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/bench-synth")
    ap.add_argument("--out", default="runs/bench/part_detector")
    ap.add_argument("--minutes", type=float, default=30.0, help="training budget (wall clock, total over resumes)")
    ap.add_argument("--epochs", type=int, default=100, help="upper bound; the budget normally ends training")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a busy machine)")
    ap.add_argument("--eval-limit", type=int, default=0, help="evaluate on the first N held-out images (0: all)")
    ap.add_argument("--throughput-images", type=int, default=256)
    ap.add_argument("--skip-extract", action="store_true", help="do not write <data>/parts_det.jsonl")
    ap.add_argument("--progress", action="store_true")
    return ap


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    out = Path(args.out)
    atomic_write_json(out / "part_detector.json", result)
    md = table(result)
    atomic_write_text(out / "part_detector.md", md)
    print(md)
    print(json.dumps({k: v for k, v in result.items() if k not in ("per_class_AP50", "num_gt")}, indent=2))
    return result


if __name__ == "__main__":
    main()
