"""Train baseline, grid, nopam and pgan on the synthetic benchmark, 3 seeds each, same budget.

Writes ``runs/bench/synth_variants.json`` (``{variant: {"mAP_mean", "mAP_std", "rank1_mean",
"rank1_std", ...}}``, fractions) and ``runs/bench/synth_variants.md``, and prints the table. It is
the ablation harness's ``variants`` grid on the synthetic CPU recipe; finished runs are reused, so
an interrupted benchmark resumes where it stopped.

    python benchmarks/synth_variants.py                       # the README table (about 70 CPU-minutes)
    python benchmarks/synth_variants.py --seeds 0 --epochs 4  # a quick look
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pgan.bench.ablation import markdown_table, run_grid
from pgan.recipes import synth_cpu_config
from pgan.synth import generate_synth, synth_config_from_dict
from pgan.utils.atomic import atomic_write_json, atomic_write_text

BENCH_SYNTH = {"num_train_ids": 160, "num_test_ids": 80, "images_per_id": (8, 12), "num_cameras": 8,
               "image_size": 160, "seed": 1}
LABELS = {"baseline": "baseline", "grid": "grid", "nopam (PGAN w/o PAM)": "nopam", "pgan": "pgan"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data", default="data/bench-synth")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--summarise-only", action="store_true",
                    help="train nothing; tabulate the finished runs (unfinished ones are reported)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    generate_synth(args.data, synth_config_from_dict(BENCH_SYNTH), progress=args.progress)
    extra = {"optim__epochs": args.epochs} if args.epochs else {}
    base = synth_cpu_config("pgan", args.data, args.out, run__progress=args.progress, **extra)
    t0 = time.perf_counter()
    summaries = run_grid("variants", base, Path(args.out) / "synth_variants", tuple(args.seeds),
                         train_missing=not args.summarise_only)
    by_variant = {LABELS[label]: row for label, row in summaries.items()}
    atomic_write_json(Path(args.out) / "synth_variants.json", by_variant)
    md = markdown_table(by_variant, "Synthetic near-twin benchmark, MobileNetV2 160 px, CPU recipe")
    atomic_write_text(Path(args.out) / "synth_variants.md", md)
    print(md)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
