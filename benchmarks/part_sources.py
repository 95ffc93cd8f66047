"""Re-ID with part regions from each part source, side by side with the baseline (synthetic benchmark).

Rows: ``baseline`` (no parts), and PGAN with the part file of each source: ``gt`` (the generator's
ground-truth boxes), ``detector`` (``benchmarks/part_detector.py``'s detector, trained within its own
budget, run first when its part file is missing), ``proposals`` (training-free, annotation-free),
``grid-variant`` (the ``grid`` model variant: uniform cells built inside the model, the paper's
grid-attention row) and, on request, ``grid`` (uniform cells written as a part file and read like
any other; cells are snapped to whole feature cells differently, so it is not the same run).
Every row uses the same CPU recipe (:func:`pgan.recipes.synth_cpu_config`) and budget; 3 seeds;
mean ± std.

Writes ``<out>/part_sources.json`` and ``<out>/part_sources.md`` (the README table). Finished runs are
reused and interrupted ones resume, as do the part files. A run whose resolved config is identical to
one the variants benchmark (``benchmarks/synth_variants.py``) already finished is read from there
instead of being trained again (``--reuse-from``): ``baseline``, ``gt`` and ``grid-variant`` are
exactly its ``baseline``, ``pgan`` and ``grid`` runs.

    python benchmarks/part_sources.py                                   # the README table
    python benchmarks/part_sources.py --sources baseline gt --seeds 0 --epochs 2   # a quick look
    python benchmarks/part_sources.py --data /tmp/tiny --seeds 0 --epochs 1 --detector-minutes 0.2 \
        --set data.p=4 data.input_size=[64,64]                                  # a smoke run
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import yaml

import part_detector  # the sibling script (a script's folder is on sys.path)
from pgan.bench.ablation import config_fingerprint, summarise
from pgan.config import load_config
from pgan.detection.extract import extract_parts
from pgan.engine.train import train
from pgan.parts.extract import write_grid_file
from pgan.parts.proposals import propose_parts
from pgan.recipes import synth_cpu_config
from pgan.utils.atomic import atomic_write_json, atomic_write_text

SOURCES = ("baseline", "gt", "detector", "proposals", "grid-variant", "grid")
DEFAULT_SOURCES = ("baseline", "gt", "detector", "proposals", "grid-variant")


def part_file(source: str, data: Path, args: argparse.Namespace) -> str | None:
    """The part file of ``source`` (written first when missing or incomplete); None for the baseline."""
    if source in ("baseline", "grid-variant"):
        return None
    if source == "gt":
        return None  # the dataset's default part file: the generator's ground truth, parts_gt.jsonl
    if source == "detector":
        if not (Path(args.detector_out) / "part_detector.json").is_file():
            part_detector.main(["--data", str(data), "--out", args.detector_out, "--minutes",
                                str(args.detector_minutes)] + (["--progress"] if args.progress else []))
        path = data / "parts_det.jsonl"  # completed here if the detector run skipped or cut it short
        extract_parts(Path(args.detector_out) / "last.pt", "synth", data, path, progress=args.progress)
        return str(path)
    if source == "proposals":
        path = data / "parts_prop.jsonl"
        propose_parts("synth", str(data), str(path), progress=args.progress)
        return str(path)
    if source == "grid":
        path = data / "parts_grid.jsonl"
        write_grid_file("synth", data, path, d=8, progress=args.progress)
        return str(path)
    raise SystemExit(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")


def finished_elsewhere(cfg, seed: int, reuse_from: str) -> Path | None:
    """A finished run under ``reuse_from`` whose resolved config is exactly ``cfg``'s, if any."""
    want = config_fingerprint(cfg)
    for run in sorted(Path(reuse_from).glob(f"*_s{seed}")):
        if (run / "result.json").is_file() and (run / "config.yaml").is_file():
            if config_fingerprint(load_config(run / "config.yaml")) == want:
                return run
    return None


def table(summary: dict) -> str:
    names = {"baseline": "baseline (no parts)", "gt": "PGAN, ground-truth boxes",
             "detector": "PGAN, detector boxes", "proposals": "PGAN, proposals (no annotations)",
             "grid-variant": "PGAN on grid cells (grid variant)", "grid": "PGAN, grid cells (part file)"}
    lines = ["| part source | mAP (%) | Rank-1 (%) | Rank-5 (%) | mINP (%) | seeds |", "|---|---|---|---|---|---|"]
    for s, r in summary.items():
        cells = [f"{100 * r[f'{k}_mean']:.1f} ± {100 * r[f'{k}_std']:.1f}"
                 for k in ("mAP", "rank1", "rank5", "mINP")]
        lines.append(f"| {names.get(s, s)} | {' | '.join(cells)} | {r['seeds']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--data", default="data/bench-synth")
    ap.add_argument("--sources", nargs="+", default=list(DEFAULT_SOURCES), choices=SOURCES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    ap.add_argument("--detector-out", default="runs/bench/part_detector")
    ap.add_argument("--detector-minutes", type=float, default=30.0)
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                    help="extra recipe overrides for every run, e.g. data.p=8 (quick looks on small data)")
    ap.add_argument("--reuse-from", default="runs/bench/synth_variants/variants",
                    help="finished runs with identical configs are read from here, not retrained")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")

    data = part_detector.ensure_data(args.data, args.progress)
    files = {s: part_file(s, data, args) for s in args.sources}
    out = Path(args.out)
    runs: dict[str, list[dict]] = {s: [] for s in args.sources}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for source in args.sources:
            run_dir = out / "part_sources" / f"{source}_s{seed}"
            extra = {"optim__epochs": args.epochs} if args.epochs else {}
            for item in args.set:
                key, _, raw = item.partition("=")
                extra[key.strip().replace(".", "__")] = yaml.safe_load(raw)
            if files[source]:
                extra["data__part_file"] = files[source]
            variant = {"baseline": "baseline", "grid-variant": "grid"}.get(source, "pgan")
            cfg = synth_cpu_config(variant, str(data), str(run_dir), seed, run__progress=args.progress, **extra)
            elsewhere = None if (run_dir / "result.json").is_file() else finished_elsewhere(cfg, seed,
                                                                                             args.reuse_from)
            if elsewhere is not None:
                print(f"{source:>12} seed {seed}: same config as {elsewhere}, result reused")
                res = json.loads((elsewhere / "result.json").read_text())
            elif (run_dir / "result.json").is_file():
                res = json.loads((run_dir / "result.json").read_text())
            else:
                res = train(cfg, resume=(run_dir / "last.pt").is_file())
            m = res["metrics"]
            print(f"{source:>12} seed {seed}: mAP {100 * m['mAP']:.1f} R1 {100 * m['rank1']:.1f} "
                  f"({res['train_seconds']:.0f} s)", flush=True)
            runs[source].append(res)
    summary = {source: summarise(results) for source, results in runs.items()}
    atomic_write_json(out / "part_sources.json", {"summary": summary, "part_files": files})
    md = table(summary)
    atomic_write_text(out / "part_sources.md", md)
    print(md)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
