"""The ablation harness: named grids of config changes, several seeds each, one table per grid.

Each grid mirrors a table of the paper; every cell is an ordinary config
override, so any recipe (the synthetic CPU one or a dataset recipe on a GPU)
runs the same way::

    run_grid("variants", base_config, out_dir="runs/ablation", seeds=(0, 1, 2))

Each (setting, seed) run keeps its own folder and ``result.json``; finished runs
are reused and an interrupted one resumes, so a long grid can be stopped at any
time. Several workers (processes, or machines sharing the folder) can run the
same grid at once: each run is claimed with a ``.claim`` file holding the
worker's pid, others skip it, and a claim whose process has died is taken over.
A setting that resolves to the same config in two grids (PGAN with all four loss
terms is also "D = 8" and the "pgan" variant) is trained once: the first run
of a config is recorded under ``<out>/_by_config/<fingerprint>.txt`` and the
other grids read its result.
Results are summarised as mean ± std over seeds (population std) and
written as markdown and CSV; where runs report attention figures by role, a second table gives each
role's relative weight, wheels (identity rims, plain wheels) on their own columns.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgan.config import Config, set_value
from pgan.errors import PganError, unknown_name
from pgan.utils.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grid:
    title: str  # the paper's table it mirrors
    settings: tuple[tuple[str, dict], ...]  # (row label, {dotted key: value})


PROPOSALS_HARD = "data/bench-synth-hard/parts_proposals.jsonl"

GRIDS: dict[str, Grid] = {
    # The key comparison (baseline vs pgan) first, so a grid cut short still has it.
    "variants": Grid("Table III: attention variants", (
        ("baseline", {"model.variant": "baseline"}), ("pgan", {"model.variant": "pgan"}),
        ("nopam (PGAN w/o PAM)", {"model.variant": "nopam"}), ("grid", {"model.variant": "grid"}))),
    "losses": Grid("Table II: loss terms (PGAN)", (
        ("L_c + L_f", {"loss.terms": ("ce", "f")}), ("L_c + L_f + L_g", {"loss.terms": ("ce", "f", "g")}),
        ("L_c + L_f + L_p", {"loss.terms": ("ce", "f", "p")}),
        ("L_c + L_f + L_g + L_p", {"loss.terms": ("ce", "f", "g", "p")}))),
    "parts": Grid("Table IV: number of parts D (PGAN)", tuple(
        (f"D = {d}", {"data.num_parts": d}) for d in (4, 6, 8, 10, 12))),
    # The CPU-budget cut of Table IV (D = 8 is the pgan run of the other grids).
    "parts_short": Grid("Table IV: number of parts D (PGAN), D = 4, 8, 12", tuple(
        (f"D = {d}", {"data.num_parts": d}) for d in (4, 8, 12))),
    "dims": Grid("Feature dimension 2C' (PGAN)", tuple(
        (f"2C' = {2 * c}", {"model.reduced_dim": c}) for c in (128, 256, 512, 1024))),
    "lambda": Grid("Cross-entropy weight lambda (PGAN)", tuple(
        (f"lambda = {x}", {"loss.lambda_ce": x}) for x in (0.5, 1.0, 2.0, 4.0))),
    # Issue 12: the PAM's switches (docs/attention.md), each against the authors' PAM.
    "pam": Grid("Part Attention Module switches (PGAN)", (
        ("authors' PAM", {}), ("part_map = area", {"model.part_map": "area"}),
        ("single score head, learnable T", {"model.pam_score": "single", "model.learn_temperature": True}),
        ("PAM lr x 10", {"optim.pam_lr_mult": 10.0}),
        ("nopam (reference)", {"model.variant": "nopam"}))),
    # Issue 18: switches that let the PAM see small parts (docs/attention.md), on the development copy.
    "small_parts": Grid("PAM switches for small parts (PGAN)", (
        ("authors' PAM", {}), ("fractional masks", {"data.mask_mode": "fraction"}),
        ("finer part map (x2)", {"model.part_upsample": 2}),
        ("fractional masks + finer map", {"data.mask_mode": "fraction", "model.part_upsample": 2}),
        ("nopam (reference)", {"model.variant": "nopam"}))),
    # The switch chosen on the development set (seed 11) for the benchmark's variants table.
    "pam_area": Grid("PGAN with area-normalised part maps", (
        ("pgan (part_map = area)", {"model.part_map": "area"}),)),
    # Annotation-free proposals instead of ground-truth boxes (the attention ratio then has clutter);
    # the proposal file of benchmarks/synth_variants.py --setting hard (written on first use).
    "proposals": Grid("PGAN on annotation-free proposals", (
        ("pgan, proposals", {"data.part_source": "proposals", "data.part_file": PROPOSALS_HARD}),
        ("pgan (part_map = area), proposals", {"data.part_source": "proposals", "model.part_map": "area",
                                               "data.part_file": PROPOSALS_HARD}))),
    # More seeds for the closest comparison of the variants table (PGAN vs PGAN w/o PAM).
    "pam_vs_nopam": Grid("PGAN vs PGAN w/o PAM", (
        ("pgan", {"model.variant": "pgan"}), ("nopam (PGAN w/o PAM)", {"model.variant": "nopam"}))),
    "retrieval": Grid("Retrieval feature (PGAN)", (
        ("F_fb", {"model.retrieval": "fb"}), ("concat(F_fb, F_g, F_p)", {"model.retrieval": "concat"}))),
}
DEFAULT_GRIDS = ("variants", "losses", "parts")

TrainFn = Callable[[Config, bool], dict]


def claim_run(run_dir: Path) -> bool:
    """Try to claim a run for this process; False when a live process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".claim"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
                os.kill(pid, 0)  # raises if the process is gone
            except (ValueError, ProcessLookupError):
                lock.unlink(missing_ok=True)  # stale claim: take it over
                continue
            except PermissionError:
                pass  # alive, owned by someone else
            return pid == os.getpid()
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return True
    return False


def config_fingerprint(cfg: Config) -> str:
    """A short hash of everything that changes a run's result (not its folder or progress bar)."""
    d = cfg.to_dict()
    d["run"] = {k: v for k, v in d["run"].items() if k not in ("out_dir", "progress")}
    return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _canonical_run_dir(out_root: Path, cfg: Config, run_dir: Path) -> Path:
    """The folder that holds (or will hold) the run of ``cfg``: ``run_dir`` unless the same config
    was already started under another grid's folder. Created exclusively, so two workers agree."""
    alias = out_root / "_by_config" / f"{config_fingerprint(cfg)}.txt"
    alias.parent.mkdir(parents=True, exist_ok=True)
    rel = run_dir.relative_to(out_root).as_posix()
    try:
        fd = os.open(alias, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        named = alias.read_text().strip()
        return out_root / named if named else run_dir
    with os.fdopen(fd, "w") as fh:
        fh.write(rel)
    return run_dir


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label).strip("_").lower()


def run_grid(name: str, base: Config, out_dir: str | Path, seeds: tuple[int, ...] = (0, 1, 2),
             train_fn: TrainFn | None = None, train_missing: bool = True) -> dict[str, dict]:
    """Train every setting of grid ``name`` with each seed; returns ``{label: summary}``.

    ``train_missing=False`` only summarises the runs already finished (the others
    are reported as pending), e.g. to write a table while a grid is still running.
    """
    if name not in GRIDS:
        raise unknown_name("ablation grid", name, list(GRIDS))
    if train_fn is None:
        from pgan.engine.train import train as train_fn
    grid = GRIDS[name]
    out = Path(out_dir) / name
    summaries: dict[str, dict] = {}
    pending = 0
    for label, changes in grid.settings:
        results = []
        for seed in seeds:
            cfg = copy.deepcopy(base)
            for key, value in changes.items():
                set_value(cfg, key, value, f"grid {name}")
            set_value(cfg, "run.seed", seed)
            run_dir = out / f"{_slug(label)}_s{seed}"
            if not (run_dir / "result.json").is_file():  # else: a run from before configs were shared
                run_dir = _canonical_run_dir(Path(out_dir), cfg, run_dir)
            set_value(cfg, "run.out_dir", str(run_dir))
            done = run_dir / "result.json"
            if done.is_file():
                res = json.loads(done.read_text())
            elif train_missing and claim_run(run_dir):
                try:
                    res = train_fn(cfg, (run_dir / "last.pt").is_file())
                finally:
                    (run_dir / ".claim").unlink(missing_ok=True)
            else:
                log.info("%s | %s | seed %d is not finished (%s)", name, label, seed,
                         "another worker has it" if train_missing else "not trained here")
                pending += 1
                continue
            m = res["metrics"]
            log.info("%s | %s | seed %d: mAP %.1f R1 %.1f", name, label, seed, 100 * m["mAP"], 100 * m["rank1"])
            results.append(res)
        if results:
            summaries[label] = summarise(results)
    if pending:
        log.warning("%d runs of grid %s are not finished; the table covers the finished ones (see the "
                    "seeds column); run again to complete it", pending, name)
    write_tables(name, summaries, out)
    return summaries


def summarise(results: list[dict]) -> dict:
    """Mean and population std of each metric over seeds (fractions)."""
    if not results:
        raise PganError("no results to summarise")
    row: dict = {"seeds": len(results)}
    # The attention figures of pgan.evaluation.attention_roles.attention_figures: the ratio with and without
    # wheels, and each role's relative weight (wheels on their own rows).
    rel_keys = sorted({k for r in results for k in r["metrics"] if k.startswith("attention_rel_")})
    for key in ("mAP", "rank1", "rank5", "mINP", "attention_ratio", "attention_ratio_no_wheels",
                "attention_entropy", "attention_max", *rel_keys):
        vals = np.array([r["metrics"][key] for r in results if key in r["metrics"]], dtype=float)
        vals = vals[np.isfinite(vals)]
        if len(vals):
            row[f"{key}_mean"], row[f"{key}_std"] = float(vals.mean()), float(vals.std())
    row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in results]))
    return row


def _ratio_cell(r: dict, key: str) -> str:
    return f"{r[f'{key}_mean']:.2f} ± {r[f'{key}_std']:.2f}" if r.get(f"{key}_mean") is not None else "–"


def markdown_table(summaries: dict[str, dict], title: str = "") -> str:
    lines = [f"**{title}**", ""] if title else []
    lines += ["| setting | mAP (%) | Rank-1 (%) | Rank-5 (%) | mINP (%) | attention ratio | ratio w/o wheels "
              "| seeds | train s/run |",
              "|---|---|---|---|---|---|---|---|---|"]
    for label, r in summaries.items():
        cells = [f"{100 * r[f'{k}_mean']:.1f} ± {100 * r[f'{k}_std']:.1f}" if f"{k}_mean" in r else "–"
                 for k in ("mAP", "rank1", "rank5", "mINP")]
        ratios = " | ".join(_ratio_cell(r, k) for k in ("attention_ratio", "attention_ratio_no_wheels"))
        lines.append(f"| {label} | {' | '.join(cells)} | {ratios} | {r['seeds']} "
                     f"| {r['train_seconds_mean']:.0f} |")
    return "\n".join(lines) + "\n"


ROLE_COLUMNS = (("identity", "identity (no wheels)"), ("shared", "shared (no wheels)"),
                ("identity_rim", "identity rims"), ("plain_wheel", "plain wheels"), ("clutter", "clutter"))


def role_table(summaries: dict[str, dict], title: str = "") -> str:
    """Each setting's mean relative part weight by role (1.0 = a uniform share), wheels on their own
    columns; empty when no run reported them."""
    if not any(f"attention_rel_{k}_mean" in r for r in summaries.values() for k, _ in ROLE_COLUMNS):
        return ""
    lines = [f"**{title}**", ""] if title else []
    lines += ["| setting | " + " | ".join(name for _, name in ROLE_COLUMNS) + " |",
              "|---|" + "---|" * len(ROLE_COLUMNS)]
    for label, r in summaries.items():
        lines.append(f"| {label} | " + " | ".join(_ratio_cell(r, f"attention_rel_{k}") for k, _ in ROLE_COLUMNS)
                     + " |")
    return "\n".join(lines) + "\n"


def write_tables(name: str, summaries: dict[str, dict], out: Path) -> None:
    roles = role_table(summaries, "Relative part weight by role (1.0 = uniform share)")
    atomic_write_text(out / f"{name}.md",
                      markdown_table(summaries, GRIDS[name].title) + (f"\n{roles}" if roles else ""))
    buf = io.StringIO()
    keys = ["setting"] + sorted({k for r in summaries.values() for k in r})
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    for label, r in summaries.items():
        writer.writerow({"setting": label, **r})
    atomic_write_text(out / f"{name}.csv", buf.getvalue())
    atomic_write_json(out / f"{name}.json", summaries)
