"""Train baseline, grid, nopam and pgan on the synthetic benchmark, 3 seeds each, same step budget.

The settings (parameters fixed before any run; see ``docs/benchmarks.md``):

* ``standard``: the benchmark set as before (``BENCH_SYNTH``);
* ``hard``: the same identities, plus about five family-level distractor parts per view (so the
  shared parts alone outnumber D = 8), identity parts drawn at 0.7x size, and ground-truth boxes
  scored like a detector's confidence (visible fraction x U(0.5, 1)), so top-D holds a mix of
  identity parts and distractors;
* ``real-like``: the hard setting with ``realism: 1.0`` (texture, reflections, blur, JPEG, night,
  clutter; fixed on 2026-12-02, no results yet).

Writes ``<out>/synth_variants[_<setting>].json`` (the hard setting's is ``synth_variants_hard_80ids.json``,
since ``synth_paired.py``, the hard setting's paired benchmark of record, writes ``synth_variants_hard.json``)
holding ``{variant: {"seeds", "mAP_mean", "mAP_std", ...,
"attention_ratio_mean", "attention_ratio_std", "attention_ratio_no_wheels_mean", ...,
"attention_rel_<role>_mean", ...}}`` (fractions; the ratios for the part-based variants, with and
without wheels, and each role's relative weight with identity rims and plain wheels as their own
roles, see :func:`pgan.evaluation.attention_roles.attention_figures`) and the markdown tables, and
prints them. Finished runs are reused, so an interrupted
benchmark resumes where it stopped, and several workers can share one grid.

    python benchmarks/synth_variants.py --setting hard                 # 12 runs, ~4 CPU-minutes each
    python benchmarks/synth_variants.py --setting hard --grids losses parts
    python benchmarks/synth_variants.py --seeds 0 --epochs 1           # a quick look
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from pgan.bench.ablation import GRIDS, markdown_table, role_table, run_grid
from pgan.recipes import SYNTH_ABLATION_CPU, synth_cpu_config
from pgan.synth import generate_synth, synth_config_from_dict
from pgan.utils.atomic import atomic_write_json, atomic_write_text

BENCH_SYNTH = {"num_train_ids": 160, "num_test_ids": 80, "images_per_id": (8, 12), "num_cameras": 8,
               "image_size": 160, "seed": 1}
# Fixed on 2026-11-29 before any training run on it (issue 12); never tuned against test figures.
HARD_SYNTH = {**BENCH_SYNTH, "extra_shared_parts": True, "id_part_scale": 0.7, "box_scores": "detector"}
# The development copy of the hard setting: other identities, families and cameras (seed 11). PAM
# switches are compared on its query/gallery split, never on the benchmark's (seed 1).
DEV_SYNTH = {**HARD_SYNTH, "seed": 11}
# The hard setting drawn like a photo (texture, reflections, blur, JPEG, night, clutter; issue 20).
# Fixed on 2026-12-02 before any run on it; no results exist for it yet.
REAL_LIKE_SYNTH = {**HARD_SYNTH, "realism": 1.0}
SETTINGS = {"standard": BENCH_SYNTH, "hard": HARD_SYNTH, "dev": DEV_SYNTH, "real-like": REAL_LIKE_SYNTH}
LABELS = {"baseline": "baseline", "grid": "grid", "nopam (PGAN w/o PAM)": "nopam", "pgan": "pgan"}


def output_stem(grid: str, setting: str) -> str:
    """The name of a grid's JSON / markdown: ``synth_<grid>[_<setting>]``, except the hard setting's variants
    grid, ``synth_variants_hard_80ids`` (its 80-identity test split), since ``synth_paired.py``, the hard
    setting's paired benchmark of record, writes ``synth_variants_hard``."""
    stem = ("synth_variants" if grid == "variants" else f"synth_{grid}") + ("" if setting == "standard"
                                                                           else f"_{setting}")
    return stem + "_80ids" if stem == "synth_variants_hard" else stem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=list(SETTINGS), default="standard")
    ap.add_argument("--grids", nargs="+", default=["variants"], choices=list(GRIDS))
    ap.add_argument("--variant-rows", nargs="*", default=[], choices=list(GRIDS), metavar="GRID",
                    help="also list these grids' finished rows in the variants table (e.g. pam_area)")
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data", default=None, help="dataset folder (default data/bench-synth[-<setting>])")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--eval-every", type=int, default=None,
                    help="evaluate every N epochs (default: 1 for the hard/dev settings, for the attention "
                         "curves; 0 = only after the last epoch for the standard one)")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--summarise-only", action="store_true",
                    help="train nothing; tabulate the finished runs (unfinished ones are reported)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    suffix = "" if args.setting == "standard" else f"_{args.setting}"
    data = args.data or f"data/bench-synth{suffix.replace('_', '-')}"
    generate_synth(data, synth_config_from_dict(dict(SETTINGS[args.setting])), progress=args.progress)
    extra = {"optim__epochs": args.epochs} if args.epochs else {}
    base = synth_cpu_config("pgan", data, args.out, recipe=SYNTH_ABLATION_CPU, run__progress=args.progress,
                            run__eval_every=args.eval_every if args.eval_every is not None
                            else int(args.setting != "standard"), **extra)
    t0 = time.perf_counter()
    for grid in args.grids:
        summaries = run_grid(grid, base, Path(args.out) / f"synth{suffix}", tuple(args.seeds),
                             train_missing=not args.summarise_only)
        if grid == "variants":
            summaries = {LABELS[label]: row for label, row in summaries.items()}
            for extra_grid in args.variant_rows:  # e.g. PGAN with a PAM switch, next to the four variants
                summaries.update(run_grid(extra_grid, base, Path(args.out) / f"synth{suffix}", tuple(args.seeds),
                                          train_missing=False))
            for label, row in summaries.items():
                if label in ("grid", "baseline"):  # no part boxes with roles: no ratio
                    for key in ("attention_ratio", "attention_ratio_no_wheels"):
                        row.setdefault(f"{key}_mean", None)
                        row.setdefault(f"{key}_std", None)
        stem = output_stem(grid, args.setting)
        atomic_write_json(Path(args.out) / f"{stem}.json", summaries)
        shown = {k: {m: v for m, v in r.items() if v is not None} for k, r in summaries.items()}
        md = markdown_table(shown, f"{GRIDS[grid].title}: synthetic near-twin benchmark ({args.setting} "
                                   "setting), MobileNetV2 160 px, 84-step CPU budget")
        roles = role_table(shown, "Relative part weight by role (1.0 = uniform share; wheels on their own)")
        md += f"\n{roles}" if roles else ""
        atomic_write_text(Path(args.out) / f"{stem}.md", md)
        print(md)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
