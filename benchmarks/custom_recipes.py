"""The own-photos recipes, run as a user runs them, against the real-dev rows they are named after.

``configs/custom_baseline.yaml`` and ``configs/custom_pgan.yaml`` (generated from
:data:`pgan.recipes.CUSTOM_CPU`) are trained with the ``pgan`` command itself, changing only
``data.root`` (the real-dev split as a custom CSV: train.txt -> train, val.txt cam1 -> query, cam2 ->
gallery, as ``benchmarks/real_dev.py`` writes it), ``run.out_dir`` and ``run.seed``, then evaluated with
``pgan eval``. Each final val mAP is set beside the 24-epoch study's rows of the variant the config is
named after (``docs/real_dev_24ep.json``: ``baseline`` and ``pgan, proposals, +global``, five seeds each):
the check is that it falls inside the range of those seeds. The test split of that dataset is never read.

Design, fixed before its runs: seed 0 for each config (the study's seed 0 is one of its five rows, so a
bit-for-bit reproduction is possible but not required: the study evaluated val every 4 epochs, the
configs do not); one thread per run, one run at a time. Runs resume (``--resume``) and skip finished
ones. Writes ``docs/custom_recipes.json`` and ``docs/custom_recipes.md``.

    OMP_NUM_THREADS=1 python benchmarks/custom_recipes.py --root ../shared/real-dev
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from pgan.utils.atomic import atomic_write_json, atomic_write_text
from real_dev import write_csv  # benchmarks/ is on sys.path when this script runs

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
# config stem -> the 24-epoch study's variant it reproduces
NAMED_AFTER = {"custom_baseline": "baseline", "custom_pgan": "pgan, proposals, +global"}


def run_config(name: str, csv_path: Path, out: Path, seed: int, epochs: int | None) -> dict:
    """Train ``configs/<name>.yaml`` on ``csv_path`` with the CLI (resuming), then ``pgan eval`` it."""
    run = out / f"{name}_s{seed}"
    pgan = [sys.executable, "-m", "pgan"]
    overrides = [f"data.root={csv_path}", f"run.out_dir={run}", f"run.seed={seed}", "run.progress=false"]
    overrides += [f"optim.epochs={epochs}"] if epochs else []
    t0 = time.perf_counter()
    if not (run / "result.json").is_file():
        resume = ["--resume"] if (run / "last.pt").is_file() else []
        subprocess.run([*pgan, "train", "--config", str(CONFIGS / f"{name}.yaml"), *resume, *overrides],
                       check=True)
    subprocess.run([*pgan, "eval", "--checkpoint", str(run / "last.pt")], check=True, stdout=subprocess.DEVNULL)
    metrics = json.loads((run / "eval.json").read_text())
    train_seconds = json.loads((run / "result.json").read_text()).get("train_seconds")
    return {"config": f"configs/{name}.yaml", "seed": seed, "mAP": metrics["mAP"], "rank1": metrics["rank1"],
            "train_seconds": train_seconds, "wall_seconds_here": round(time.perf_counter() - t0, 1)}


def compare(rows: list[dict], study_json: Path) -> list[dict]:
    """Each row beside the study's rows of the variant it is named after (range, mean, population std)."""
    study = json.loads(study_json.read_text())["rows"]
    for row in rows:
        variant = NAMED_AFTER[Path(row["config"]).stem]
        ref = [r["mAP"] for r in study if r["variant"] == variant]
        row.update(named_after=variant, table_seeds=len(ref), table_min=min(ref), table_max=max(ref),
                   table_mean=float(np.mean(ref)), table_std=float(np.std(ref)),
                   within_range=min(ref) <= row["mAP"] <= max(ref),
                   table_seed_same=next((r["mAP"] for r in study if r["variant"] == variant
                                         and r["seed"] == row["seed"]), None))
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| config | named after (real_dev_24ep) | seed | val mAP (%) | table: mean ± std (range), 5 seeds |"
             " same seed in the table | inside the range |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        same = f"{100 * r['table_seed_same']:.1f}" if r["table_seed_same"] is not None else "–"
        lines.append(f"| `{r['config']}` | {r['named_after']} | {r['seed']} | {100 * r['mAP']:.1f} | "
                     f"{100 * r['table_mean']:.1f} ± {100 * r['table_std']:.1f} ({100 * r['table_min']:.1f}-"
                     f"{100 * r['table_max']:.1f}) | {same} | {'yes' if r['within_range'] else 'no'} |")
    return "\n".join(lines) + "\n"


HEAD = """# The own-photos recipes on real photos

Written by `OMP_NUM_THREADS=1 python benchmarks/custom_recipes.py --root ../shared/real-dev` (raw figures:
[custom_recipes.json](custom_recipes.json)). Each generated config is trained with `pgan train --config
configs/<name>.yaml data.root=<real-dev CSV>` (and `run.out_dir`, `run.seed`), evaluated with `pgan eval`
on real-dev val (query = cam1, gallery = cam2), and set beside the rows of the 24-epoch study it is named
after ([real_dev_24ep.md](real_dev_24ep.md)). One seed per config, fixed before the runs.

"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--root", required=True, help="the real-dev folder (images/, train.txt, val.txt)")
    ap.add_argument("--out", default="runs/custom_recipes", help="run folders and the CSV go here")
    ap.add_argument("--docs", default="docs", help="where custom_recipes.json / .md go")
    ap.add_argument("--configs", nargs="+", default=list(NAMED_AFTER), choices=list(NAMED_AFTER))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe (a quick look, not the table)")
    args = ap.parse_args(argv)
    root, out = Path(args.root).resolve(), Path(args.out).resolve()
    if not (root / "train.txt").is_file():
        raise SystemExit(f"{root} is not the real-dev folder (needs train.txt, val.txt and images/)")
    csv_path = write_csv(root, out)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = [run_config(name, csv_path, out, args.seed, args.epochs) for name in args.configs]
    rows = compare(rows, Path(args.docs) / "real_dev_24ep.json")
    if args.epochs is None:  # a shortened look never overwrites the recorded figures
        atomic_write_json(Path(args.docs) / "custom_recipes.json", {"rows": rows})
        atomic_write_text(Path(args.docs) / "custom_recipes.md", HEAD + markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
