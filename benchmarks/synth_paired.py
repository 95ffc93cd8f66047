"""The hard synthetic setting as a paired benchmark: baseline, grid, nopam, PGAN and the oracle on the same
seeds, a larger test split, and every paired difference with its 95% interval (issue 18).

Design, fixed on 2026-12-02 at 17:21, before any run of it (``DESIGN``, written into the JSON):

* data: the hard setting (``HARD_SYNTH`` of ``synth_variants.py``: the same 160 training identities,
  seed 1) with its test split enlarged from 80 to 320 identities (the first 80 are the old ones, since
  identities are drawn per id), so that evaluation noise is small next to seed noise; fixed once;
* recipe: the 84-step ablation recipe (``SYNTH_ABLATION_CPU``, MobileNetV2 160 px, ground-truth boxes
  scored like a detector); evaluation after the last epoch only; the paper's 512-d baseline (the default);
* variants: baseline, grid, nopam, pgan (the authors' PAM) and oracle (weights ``softmax(1.0 x role
  score)`` over ground-truth roles: identity parts e times a shared part, clutter e^-1; the default
  ``model.oracle_temperature``); every variant on every seed, queued seed by seed, pgan, nopam and oracle
  on every seed before baseline and grid, so a benchmark cut short leaves whole paired sets of the
  comparison the plan is about;
* seeds: a pilot of ``PILOT_SEEDS`` (3) for every variant; the seed count for the full benchmark is then
  the fewest whose 95% half-width for PGAN - nopam is at most 1 mAP at the pilot's standard deviation of
  the paired differences (``pgan.bench.paired.seeds_for_half_width``), written into the JSON as ``plan``;
  ``--full`` runs up to that count (resumable; rows of runs whose folders are gone are carried over from
  the JSON, as in ``real_dev.py``);
* statistic: final-epoch mAP; per pair, the mean paired difference with its 95% t-interval
  (``diff_mean``, ``diff_ci95``); the attention ratio with and without wheels per variant.

Writes ``docs/synth_variants_hard.json`` / ``.md`` (the hard setting's table of record; the first 3-seed,
80-identity design that ``synth_variants.py --setting hard`` writes is ``synth_variants_hard_80ids.json``)
and prints the tables. A JSON under the name this benchmark used before (``synth_paired_hard.json``) is
read when the new one is absent.

    python benchmarks/synth_paired.py --workers 2          # the pilot (15 runs, ~5 min each on one thread)
    python benchmarks/synth_paired.py --workers 2 --full   # every planned seed
    python benchmarks/synth_paired.py --summarise-only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from pgan.bench.ablation import claim_run, role_table, summarise
from pgan.bench.paired import paired_difference, paired_table, seeds_for_half_width
from pgan.engine.train import train
from pgan.recipes import SYNTH_ABLATION_CPU, synth_cpu_config
from pgan.synth import generate_synth, synth_config_from_dict
from pgan.utils.atomic import atomic_write_json, atomic_write_text

HARD_SYNTH = {"num_train_ids": 160, "num_test_ids": 80, "images_per_id": (8, 12), "num_cameras": 8,
              "image_size": 160, "seed": 1, "extra_shared_parts": True, "id_part_scale": 0.7,
              "box_scores": "detector"}  # synth_variants.py's hard setting, repeated here to fix it
PAIRED_SYNTH = {**HARD_SYNTH, "num_test_ids": 320}
VARIANTS = {"pgan": {"model.variant": "pgan"}, "nopam": {"model.variant": "nopam"},
            "oracle": {"model.variant": "oracle"}, "baseline": {"model.variant": "baseline"},
            "grid": {"model.variant": "grid"},
            # Added 2026-12-02 21:57 (fourth session), before any of their runs: the anti-collapse switches of
            # issue 20 (part dropout 0.25; entropy floor 0.8, the normalised entropy of 8 weights whose
            # largest is about 0.5), on the pilot seeds, to be compared with pgan and nopam on those seeds.
            "pgan-dropout": {"model.variant": "pgan", "model.part_dropout": 0.25},
            "pgan-entfloor": {"model.variant": "pgan", "loss.entropy_floor": 0.8}}
SWITCHES = ("pgan-dropout", "pgan-entfloor")  # never part of --full's plan: pilot seeds only
FIRST = ("pgan", "nopam", "oracle")  # queued first on every seed: the comparisons the seed plan is about
PILOT_SEEDS = (0, 1, 2)
MAX_SEEDS = 60  # the plan is capped here (and says so)
TARGET_HALF_WIDTH = 0.01  # 1 mAP
PAIRS = [("pgan", "nopam"), ("oracle", "nopam"), ("pgan", "oracle"), ("pgan", "baseline"), ("nopam", "baseline"),
         ("grid", "baseline"), ("nopam", "grid"), ("pgan", "grid"), ("oracle", "baseline"),
         ("pgan-dropout", "pgan"), ("pgan-entfloor", "pgan"), ("pgan-dropout", "nopam"),
         ("pgan-entfloor", "nopam")]
DESIGN = {"fixed": "2026-12-02 17:21, before any run", "data": {k: list(v) if isinstance(v, tuple) else v
                                                                for k, v in PAIRED_SYNTH.items()},
          "recipe": "SYNTH_ABLATION_CPU (84 steps), run.eval_every 0", "variants": VARIANTS,
          "pilot_seeds": list(PILOT_SEEDS), "target_half_width": TARGET_HALF_WIDTH, "max_seeds": MAX_SEEDS,
          "statistic": "final-epoch mAP; paired difference mean with a 95% t-interval over seeds"}
DOC_NAME = "synth_variants_hard.json"  # the file issue 18 names; the README's tables come from it
LEGACY_DOC_NAME = "synth_paired_hard.json"  # this benchmark's name until 2026-12-06
METRICS = ("mAP", "rank1", "mINP", "attention_ratio", "attention_ratio_no_wheels", "attention_entropy",
           "attention_max")


def run_dir(out: Path, label: str, seed: int) -> Path:
    return out / "runs" / f"{label}_s{seed}"


def config_for(label: str, seed: int, data: Path, out: Path):
    changes = {k.replace(".", "__"): v for k, v in VARIANTS[label].items()}
    return synth_cpu_config("pgan", str(data), str(run_dir(out, label, seed)), seed=seed,
                            recipe=SYNTH_ABLATION_CPU, run__progress=False, run__eval_every=0, **changes)


def plan(rows: list[dict]) -> dict:
    """The seed count for a 1-mAP half-width, from the pilot seeds' PGAN - nopam spread."""
    values = {(r["variant"], r["seed"]): r["mAP"] for r in rows}
    pilot = paired_difference(values, "pgan", "nopam", PILOT_SEEDS)
    if pilot is None or len(pilot["seeds"]) < len(PILOT_SEEDS):
        return {"seeds": None, "why": "the pilot is not finished"}
    n = seeds_for_half_width(pilot["diff_sd"], TARGET_HALF_WIDTH, MAX_SEEDS)
    return {"pilot_diff_sd": pilot["diff_sd"], "seeds_needed": n, "seeds": min(n, MAX_SEEDS),
            "why": f"fewest seeds with t_0.975(n-1) * sd / sqrt(n) <= {TARGET_HALF_WIDTH} at the pilot's sd"
                   + (f" (more than {MAX_SEEDS}: capped)" if n > MAX_SEEDS else "")}


def work(data: Path, out: Path, seeds: list[int], variants: list[str] | None = None,
         done: frozenset[tuple[str, int]] = frozenset()) -> None:
    """Train every unfinished (seed, variant) this worker can claim: pgan, nopam and oracle seed by seed,
    then baseline and grid seed by seed (the switches only when named in ``variants``). ``done`` holds the
    (variant, seed) pairs whose rows the docs JSON already has (their run folders may be on another machine)."""
    rest = [v for v in VARIANTS if v not in FIRST and (v not in SWITCHES or variants is not None)]
    queue = [(s, v) for group in (FIRST, rest) for s in seeds for v in group
             if (variants is None or v in variants) and (v, s) not in done]
    for seed, label in queue:
        rd = run_dir(out, label, seed)
        if (rd / "result.json").is_file() or not claim_run(rd):
            continue
        try:
            res = train(config_for(label, seed, data, out), (rd / "last.pt").is_file())
            logging.info("%s seed %d: mAP %.4f", label, seed, res["metrics"]["mAP"])
        finally:
            (rd / ".claim").unlink(missing_ok=True)


def collect(out: Path, earlier: list[dict] = ()) -> dict:
    """Per-seed rows of the finished runs (plus ``earlier`` rows whose run folders are gone, marked
    ``carried``), per-variant summaries, the paired differences and the seed plan."""
    rows: list[dict] = []
    results: dict[str, list[dict]] = {}
    for f in sorted((out / "runs").glob("*_s*/result.json")) if (out / "runs").is_dir() else []:
        label, seed = f.parent.name.rsplit("_s", 1)
        if label not in VARIANTS:
            continue
        r = json.loads(f.read_text())
        results.setdefault(label, []).append(r)
        rows.append({"variant": label, "seed": int(seed), "train_seconds": r["train_seconds"],
                     **{k: v for k, v in r["metrics"].items() if k in METRICS or k.startswith("attention_rel_")}})
    have = {(r["variant"], r["seed"]) for r in rows}
    for r in earlier:
        if (r["variant"], r["seed"]) not in have and r["variant"] in VARIANTS:
            rows.append({**r, "carried": True})
            results.setdefault(r["variant"], []).append({"metrics": r, "train_seconds": r["train_seconds"]})
    rows.sort(key=lambda r: (r["seed"], list(VARIANTS).index(r["variant"])))
    summary = {label: {**summarise(results[label]), "seed_list": sorted(r["seed"] for r in rows
                                                                        if r["variant"] == label)}
               for label in VARIANTS if label in results}
    values = {(r["variant"], r["seed"]): r["mAP"] for r in rows}
    pairs = {f"{a} - {b}": p for a, b in PAIRS if (p := paired_difference(values, a, b)) is not None}
    return {"design": DESIGN, "plan": plan(rows), "rows": rows, "summary": summary, "paired_mAP": pairs}


def _cell(s: dict, key: str, scale: float = 100.0, digits: int = 1) -> str:
    if s.get(f"{key}_mean") is None or not math.isfinite(s[f"{key}_mean"]):
        return "–"
    return f"{scale * s[f'{key}_mean']:.{digits}f} ± {scale * s[f'{key}_std']:.{digits}f}"


def markdown(result: dict) -> str:
    lines = ["| variant | mAP (%) | mINP (%) | attention ratio | ratio w/o wheels | attention entropy "
             "| largest weight | seeds |", "|---|---|---|---|---|---|---|---|"]
    for label, s in result["summary"].items():
        ratios = " | ".join(_cell(s, k, 1, 2) for k in ("attention_ratio", "attention_ratio_no_wheels",
                                                        "attention_entropy", "attention_max"))
        lines.append(f"| {label} | {_cell(s, 'mAP')} | {_cell(s, 'mINP')} | {ratios} | {s['seeds']} |")
    lines += ["", *paired_table(result["paired_mAP"])]
    roles = role_table({k: v for k, v in result["summary"].items() if k != "baseline" and k != "grid"},
                       "Relative part weight by role (1.0 = a uniform share; wheels on their own)")
    lines += ["", roles.rstrip("\n")] if roles else []
    pl = result["plan"]
    if pl.get("seeds"):
        lines += ["", f"Seed plan: {pl['why']}; pilot sd of PGAN - nopam {100 * pl['pilot_diff_sd']:.2f} "
                      f"mAP points -> {pl['seeds_needed']} seeds"]
    else:
        lines += ["", f"Seed plan: {pl['why']}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/synth_paired")
    ap.add_argument("--data", default="data/bench-synth-hard-320")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--workers", type=int, default=1, help="one-thread training processes sharing the queue")
    ap.add_argument("--full", action="store_true", help="run every seed of the plan (after the pilot)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=None,
                    help="train only these (default: all; the table always shows every finished run)")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--summarise-only", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out, data = Path(args.out).resolve(), Path(args.data).resolve()
    doc_json = Path(args.docs) / DOC_NAME
    legacy = Path(args.docs) / LEGACY_DOC_NAME
    source = doc_json if doc_json.is_file() else legacy
    earlier = json.loads(source.read_text())["rows"] if source.is_file() else []
    if args.worker:
        work(data, out, args.seeds, args.variants, frozenset((r["variant"], r["seed"]) for r in earlier))
        return
    t0 = time.perf_counter()
    if not args.summarise_only:
        generate_synth(str(data), synth_config_from_dict(dict(PAIRED_SYNTH)), progress=True)
        seeds = list(PILOT_SEEDS)
        if args.full:
            n = collect(out, earlier)["plan"]["seeds"]
            if n is None:
                raise SystemExit("the pilot is not finished: run without --full first")
            seeds = list(range(n))
        done = {(r["variant"], r["seed"]) for r in earlier}
        wanted = args.variants or [v for v in VARIANTS if v not in SWITCHES]
        seeds = [s for s in seeds if any((v, s) not in done for v in wanted)]
        cmd = [sys.executable, __file__, "--worker", "--out", str(out), "--data", str(data), "--docs", args.docs,
               "--seeds", *map(str, seeds)] + (["--variants", *args.variants] if args.variants else [])
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        procs = [subprocess.Popen(cmd, env=env) for _ in range(max(1, args.workers))] if seeds else []
        if any(p.wait() for p in procs):
            logging.warning("a worker failed; the table covers the finished runs")
    result = collect(out, earlier)
    result["seconds"] = round(time.perf_counter() - t0)
    md = markdown(result)
    atomic_write_json(doc_json, result)
    atomic_write_text(doc_json.with_suffix(".md"), md)
    print(md)


if __name__ == "__main__":
    main()
