"""Train baseline, grid, nopam and pgan on the synthetic benchmark, 3 seeds each, same budget.

Writes ``runs/bench/synth_variants.json`` (``{variant: {"mAP_mean", "mAP_std", "rank1_mean",
"rank1_std", ...}}``, fractions), ``runs/bench/synth_variants.md`` and prints the table. Each
(variant, seed) run keeps its own folder; finished runs are reused, so an interrupted benchmark
resumes where it stopped.

    python benchmarks/synth_variants.py                 # the README table
    python benchmarks/synth_variants.py --seeds 0 --variants baseline pgan --epochs 4   # a quick look
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from pgan.data.synth import generate_synth, synth_config_from_dict
from pgan.engine.experiment import train
from pgan.recipes import synth_cpu_config
from pgan.utils.atomic import atomic_write_json, atomic_write_text

BENCH_SYNTH = {"num_train_ids": 160, "num_test_ids": 80, "images_per_id": (8, 12), "num_cameras": 8,
               "image_size": 160, "seed": 1}


def summarise(runs: dict[str, list[dict]]) -> dict:
    out = {}
    for variant, results in runs.items():
        row = {}
        for key in ("mAP", "rank1", "rank5", "mINP"):
            vals = np.array([r["metrics"][key] for r in results if key in r["metrics"]])
            if len(vals):
                row[f"{key}_mean"], row[f"{key}_std"] = float(vals.mean()), float(vals.std(ddof=0))
        row["seeds"] = len(results)
        row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in results]))
        out[variant] = row
    return out


def table(summary: dict) -> str:
    lines = ["| variant | mAP (%) | Rank-1 (%) | Rank-5 (%) | seeds | train s/run |", "|---|---|---|---|---|---|"]
    for v, r in summary.items():
        lines.append(f"| {v} | {100 * r['mAP_mean']:.1f} ± {100 * r['mAP_std']:.1f} "
                     f"| {100 * r['rank1_mean']:.1f} ± {100 * r['rank1_std']:.1f} "
                     f"| {100 * r['rank5_mean']:.1f} ± {100 * r['rank5_std']:.1f} | {r['seeds']} "
                     f"| {r['train_seconds_mean']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data", default="data/bench-synth")
    ap.add_argument("--variants", nargs="+", default=["baseline", "grid", "nopam", "pgan"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    generate_synth(args.data, synth_config_from_dict(BENCH_SYNTH), progress=args.progress)
    out = Path(args.out)
    runs: dict[str, list[dict]] = {v: [] for v in args.variants}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for variant in args.variants:
            run_dir = out / "synth_variants" / f"{variant}_s{seed}"
            if (run_dir / "result.json").is_file():
                res = json.loads((run_dir / "result.json").read_text())
            else:
                extra = {"optim__epochs": args.epochs} if args.epochs else {}
                cfg = synth_cpu_config(variant, args.data, str(run_dir), seed, run__progress=args.progress,
                                       **extra)
                res = train(cfg, resume=(run_dir / "last.pt").is_file())
            m = res["metrics"]
            print(f"{variant:>8} seed {seed}: mAP {100 * m['mAP']:.1f} R1 {100 * m['rank1']:.1f} "
                  f"({res['train_seconds']:.0f} s)", flush=True)
            runs[variant].append(res)
    summary = summarise(runs)
    atomic_write_json(out / "synth_variants.json", summary)
    md = table(summary)
    atomic_write_text(out / "synth_variants.md", md)
    print(md)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
