"""Per-part-class attention statistics over a split (``pgan analyze attention``, the paper's Fig. 11).

For each part class: how often it is among the top-D selected boxes (Fig. 11a) and
the distribution of its PAM weights (Fig. 11b), as CSVs, plots, a markdown
summary naming the most and least attended classes, and ``report.html``.

Where ground-truth boxes carry roles (the synthetic benchmark), it also reports the
PAM's weight on identity parts vs shared (family-level) parts as a ratio, 1.0 being
uniform (:mod:`pgan.evaluation.attention_roles`); detector and proposal boxes take the
role of the ground-truth box they overlap at IoU >= 0.5, or count as clutter. The
same ratio is logged at every evaluation during training (``eval_attention_ratio``
in ``metrics.csv``) and plotted over epochs when the run's ``metrics.csv`` has it.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgan.errors import PganError
from pgan.evaluation.attention_roles import RoleAttention, role_attention, separate_wheels
from pgan.parts import PART_CLASSES
from pgan.parts.roles import selection_roles
from pgan.utils.atomic import atomic_open, atomic_write_text
from pgan.viz.attention import (
    SPLITS,
    ImageAttention,
    agg_figure,
    check_attention_run,
    image_attention,
    save_figure,
)
from pgan.viz.ranks import load_run
from pgan.viz.report_html import Section, markdown_table, prepare_out_dir, write_report

log = logging.getLogger(__name__)


@dataclass
class ClassStats:
    """One part class over a split."""

    label: str
    candidates: int = 0  # boxes of this class among all candidates
    selected: int = 0  # boxes of this class among the top-D (Fig. 11a)
    images: int = 0  # images with at least one selected box of this class
    weights: list[float] | None = None  # PAM weights of its valid selected boxes (Fig. 11b)
    relative: list[float] | None = None  # weight x number of valid parts (1 = the uniform share)


@dataclass
class AttentionStats:
    num_images: int
    num_parts: int
    total_candidates: int
    total_selected: int
    images_with_parts: int  # images with at least one valid part (their weights sum to 1)
    max_sum_error: float  # max |sum of an image's weights over valid parts - 1|
    classes: list[ClassStats]  # most often selected first
    roles: RoleAttention | None = None  # identity vs shared parts, where roles are known

    def csv_rows(self) -> list[dict]:
        def stat(f, a: np.ndarray) -> str:
            return f"{f(a):.4f}" if a.size else ""

        rows = []
        for c in self.classes:
            w = np.asarray(c.weights or [], dtype=np.float64)
            r = np.asarray(c.relative or [], dtype=np.float64)
            rows.append({"class": c.label, "candidates": c.candidates, "selected": c.selected,
                         "images": c.images,
                         "selected_per_image": f"{c.selected / max(self.num_images, 1):.4f}",
                         "selected_of_candidates": f"{c.selected / c.candidates:.4f}" if c.candidates else "",
                         "weight_n": int(w.size), "weight_mean": stat(np.mean, w),
                         "weight_median": stat(np.median, w), "weight_std": stat(np.std, w),
                         "weight_min": stat(np.min, w), "weight_max": stat(np.max, w),
                         "relative_weight_mean": stat(np.mean, r),
                         "weight_share": f"{w.sum() / max(self.images_with_parts, 1):.4f}"})
        return rows


def attention_statistics(items: list[ImageAttention], num_parts: int) -> AttentionStats:
    """Per-class selection counts and PAM-weight distributions (pure)."""
    classes: dict[str, ClassStats] = {}

    def get(label: str) -> ClassStats:
        return classes.setdefault(label, ClassStats(label, weights=[], relative=[]))

    total_sel, with_parts, max_err = 0, 0, 0.0
    for it in items:
        for label in it.candidates:
            get(label).candidates += 1
        nv = int(it.valid.sum())
        for i, b in enumerate(it.boxes):
            c = get(b.label)
            c.selected += 1
            if it.valid[i]:
                c.weights.append(float(it.weights[i]))
                c.relative.append(float(it.weights[i]) * nv)
        for label in {b.label for b in it.boxes}:
            get(label).images += 1
        total_sel += len(it.boxes)
        if nv:
            with_parts += 1
            max_err = max(max_err, abs(float(it.weights[it.valid].astype(np.float64).sum()) - 1.0))
    order = sorted(classes.values(), key=lambda c: (-c.selected, c.label))
    return AttentionStats(len(items), num_parts, sum(len(it.candidates) for it in items), total_sel, with_parts,
                          max_err, order)


MIN_WEIGHTS = 5  # a class needs this many weights to be named most / least attended


def _times(n: int) -> str:
    return f"{n} time" if n == 1 else f"{n} times"


def _summary_md(stats: AttentionStats, split: str, checkpoint: str, variant: str) -> str:
    sel = [c for c in stats.classes if c.selected]
    weighted = [c for c in sel if c.relative]
    lines = [f"# Part attention over the {split} split", "",
             f"Checkpoint `{checkpoint}` ({variant}); {stats.num_images} images, top-D with D={stats.num_parts}; "
             f"{stats.total_candidates} candidate boxes, {stats.total_selected} selected "
             f"({stats.total_selected / max(stats.num_images, 1):.2f} per image).", ""]
    if sel:
        most, least = sel[0], sel[-1]
        lines.append(f"* Most often selected: **{most.label}** ({_times(most.selected)}, in {most.images} "
                     f"images); least often: **{least.label}** ({_times(least.selected)}).")
    # Rankings by weight only over classes with enough samples to mean something.
    floor = MIN_WEIGHTS if any(len(c.relative) >= MIN_WEIGHTS for c in weighted) else 1
    enough = [c for c in weighted if len(c.relative) >= floor]
    if enough:
        by_rel = sorted(enough, key=lambda c: -float(np.mean(c.relative)))
        hi, lo = by_rel[0], by_rel[-1]
        lines.append(f"* Most attended (highest mean PAM weight relative to a uniform share, classes selected "
                     f"at least {_times(floor)}): **{hi.label}** "
                     f"({np.mean(hi.relative):.2f}x uniform, mean weight {np.mean(hi.weights):.3f}); "
                     f"least attended: **{lo.label}** ({np.mean(lo.relative):.2f}x, {np.mean(lo.weights):.3f}).")
    never = sorted({c.label for c in stats.classes if not c.selected})
    absent = [c for c in PART_CLASSES if c not in {x.label for x in stats.classes}]
    if never:
        lines.append(f"* Candidates but never selected: {', '.join(never)}.")
    if absent and variant != "grid":
        lines.append(f"* Part classes absent from this split: {', '.join(absent)}.")
    lines += [f"* Checks: selection counts sum to {sum(c.selected for c in stats.classes)} = the number of "
              f"selected boxes ({stats.total_selected}); the weights of each of the {stats.images_with_parts} "
              f"images with parts sum to 1 over its valid parts (max deviation {stats.max_sum_error:.1e}).", ""]
    keys = ["class", "selected", "images", "selected_per_image", "weight_mean", "weight_median",
            "relative_weight_mean", "weight_share"]
    lines.append(markdown_table([keys] + [[str(r[k]) for k in keys] for r in stats.csv_rows()]))
    return "\n".join(lines)


def _plot_stats(stats: AttentionStats, out: Path, variant: str) -> list[str]:
    sel = [c for c in stats.classes if c.selected]
    fig = agg_figure(max(6.0, 0.55 * len(sel) + 2), 3.6)
    ax = fig.subplots()
    ax.bar(range(len(sel)), [c.selected for c in sel], color="tab:blue")
    ax.set_xticks(range(len(sel)), [c.label for c in sel], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("times selected among top-D")
    ax.set_title(f"Part selection frequency ({stats.num_images} images, D={stats.num_parts})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "selection_counts.png")
    fig = agg_figure(max(6.0, 0.55 * len(sel) + 2), 3.8)
    ax = fig.subplots()
    spread = [i for i, c in enumerate(sel) if c.weights and len(c.weights) > 1 and np.ptp(c.weights) > 1e-9]
    if spread:
        ax.violinplot([sel[i].weights for i in spread], positions=spread, widths=0.8, showmedians=True)
    for i, c in enumerate(sel):
        if c.weights and i not in spread:
            ax.scatter([i] * len(c.weights), c.weights, s=8, color="tab:orange")
    ax.set_xticks(range(len(sel)), [c.label for c in sel], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("PAM weight" if variant != "nopam" else "part weight (uniform)")
    ax.set_title("Distribution of the attention weight per part class", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "weight_distribution.png")
    return ["selection_counts.png", "weight_distribution.png"]


def roles_of_items(items: list[ImageAttention], truth_file: Path | None
                   ) -> tuple[list[list[str | None]], list[list[str | None]]]:
    """The role of every selected box and the class of the ground-truth part it is (see
    :func:`pgan.parts.roles.selection_roles`)."""
    return selection_roles([it.boxes for it in items], [it.record.key for it in items], truth_file)


def _role_lines(att: RoleAttention) -> list[str]:
    def f(x: float, fmt: str = ".2f") -> str:
        return "n/a" if math.isnan(x) else format(x, fmt)

    return [f"* **Identity vs shared parts: attention ratio {f(att.ratio)}** (1.0 = uniform; mean weight relative "
            f"to a uniform share: identity {f(att.relative['identity'])}x over {att.count['identity']} parts, "
            f"shared {f(att.relative['shared'])}x over {att.count['shared']}, clutter "
            f"{f(att.relative['clutter'])}x over {att.count['clutter']}). Share of all attention: identity "
            f"{f(100 * att.share['identity'], '.1f')}%, shared {f(100 * att.share['shared'], '.1f')}%, clutter "
            f"{f(100 * att.share['clutter'], '.1f')}%."]


def read_ratio_curve(metrics_csv: Path) -> list[tuple[int, float]]:
    """``(epoch, eval_attention_ratio)`` rows of a run's ``metrics.csv`` (empty when it has none)."""
    if not metrics_csv.is_file():
        return []
    with open(metrics_csv, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        v = r.get("eval_attention_ratio")
        if v not in (None, ""):
            out.append((int(r["epoch"]), float(v)))
    return out


def _plot_curve(curve: list[tuple[int, float]], out: Path) -> str:
    fig = agg_figure(5.0, 3.2)
    ax = fig.subplots()
    ax.plot([e for e, _ in curve], [v for _, v in curve], marker="o")
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="uniform")
    ax.set_xlabel("epoch")
    ax.set_ylabel("identity / shared attention")
    ax.set_title("PAM attention ratio over training (query split)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "attention_ratio_curve.png")
    return "attention_ratio_curve.png"


def _write_csv(path: Path, rows: list[dict]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["class"])
        writer.writeheader()
        writer.writerows(rows)


def analyze_attention(checkpoint: str | Path, out_dir: str | Path, split: str = "query",
                      max_images: int | None = None, seed: int = 0, batch_size: int = 64) -> AttentionStats:
    """Per-class selection counts and weight distributions over ``split``: CSVs, plots, summary, report."""
    if split not in SPLITS:
        raise PganError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = prepare_out_dir(out_dir)
    run = load_run(checkpoint)
    check_attention_run(run)
    records = list(getattr(run.dataset, split))
    if not records:
        raise PganError(f"the {split} split of {run.cfg.data.root} is empty")
    if max_images is not None and max_images < len(records):
        rng = np.random.default_rng(seed)
        records = [records[i] for i in sorted(rng.choice(len(records), max_images, replace=False))]
    items = image_attention(run, records, batch_size=batch_size, maps=False)
    stats = attention_statistics(items, run.model.num_parts)
    per_part = [{"image": it.record.key, "pid": it.record.pid, "camid": it.record.camid, "slot": i + 1,
                 "class": b.label, "score": f"{b.score:.4f}", "weight": f"{float(it.weights[i]):.6f}",
                 "valid": int(it.valid[i]), "valid_parts": int(it.valid.sum())}
                for it in items for i, b in enumerate(it.boxes)]
    _write_csv(out / "attention_parts.csv", per_part)
    _write_csv(out / "attention_classes.csv", stats.csv_rows())
    variant = run.cfg.model.variant
    summary = _summary_md(stats, split, str(checkpoint), variant)
    roles, truth_labels = roles_of_items(items, Path(run.cfg.data.root) / "parts_gt.jsonl")
    if any(r is not None for rs in roles for r in rs):
        weights, valid = [it.weights for it in items], [it.valid for it in items]  # parts count by mask
        stats.roles = role_attention(weights, roles, valid)
        # The same figure without wheels: a wheel is an identity part only when it has the identity's own
        # rim, so a PAM that likes wheels as such also scores a high ratio. Excluded parts still count
        # towards each image's number of valid parts.
        # Wheels get their own rows (identity rims, plain wheels), so identity / shared leave them out.
        no_wheels = role_attention(weights, separate_wheels(roles, truth_labels), valid)
        wheel_rows = ", ".join(
            f"{row.replace('_', ' ')}s {no_wheels.relative[row]:.2f}x over {no_wheels.count[row]}"
            for row in ("identity_rim", "plain_wheel") if no_wheels.count.get(row))
        summary += "\n" + "\n".join(_role_lines(stats.roles)) + "\n"
        summary += (f"* Without wheels (rims and plain wheels left out): ratio "
                    f"{'n/a' if math.isnan(no_wheels.ratio) else format(no_wheels.ratio, '.2f')}, identity "
                    f"{no_wheels.relative['identity']:.2f}x, shared {no_wheels.relative['shared']:.2f}x"
                    f"{'; wheels: ' + wheel_rows if wheel_rows else ''}.\n")
        atomic_write_text(out / "attention_roles.json", json.dumps(
            {**stats.roles.to_dict(), "without_wheels": no_wheels.to_dict()}, indent=2) + "\n")
    atomic_write_text(out / "summary.md", summary)
    figures = _plot_stats(stats, out, variant)
    curve = read_ratio_curve(Path(checkpoint).parent / "metrics.csv")
    if curve:
        figures.append(_plot_curve(curve, out))
    keys = ["class", "candidates", "selected", "images", "selected_per_image", "weight_mean", "weight_median",
            "relative_weight_mean", "weight_share"]
    table = [keys] + [[str(r[k]) for k in keys] for r in stats.csv_rows()]
    notes = [line.lstrip("* ").replace("**", "") for line in summary.splitlines() if line.startswith("* ")]
    write_report(out, f"Part attention statistics ({split})",
                 [Section("Summary", notes, table=table,
                          files=["summary.md", "attention_classes.csv", "attention_parts.csv"]),
                  Section("Selection frequency (Fig. 11a) and weight distribution (Fig. 11b)", images=figures)],
                 {"checkpoint": str(checkpoint), "variant": variant, "split": split})
    log.info("attention statistics of %d %s images written to %s", len(items), split, out)
    return stats
