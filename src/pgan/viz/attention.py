"""What the part attention sees: per-image figures (``pgan viz attention``) and per-class
statistics over a split (``pgan analyze attention``), the paper's Figs. 3(c), 8(d, e) and 11.

For every image the top-D candidate boxes are selected exactly as the model's
masks are built (:func:`pgan.parts.selection.select_top_d`), so slot ``i`` of
the PAM weights belongs to selected box ``i``. The ``F_p`` heatmap is the
channel mean of ``part_map`` upsampled to the image; since
``F_p = F_g (1 + sum_i w_i M_i)``, the channel mean of ``F_g`` is recovered
from it without a second backbone pass.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pgan.data.records import ImageRecord
from pgan.errors import PganError
from pgan.parts import PART_CLASSES
from pgan.parts.boxfile import PartBox
from pgan.parts.masks import grid_masks
from pgan.parts.selection import select_top_d
from pgan.utils.atomic import atomic_open, atomic_write_json, atomic_write_text
from pgan.viz.ranks import LoadedRun, find_record, load_run
from pgan.viz.report_html import Section, markdown_table, prepare_out_dir, write_report

log = logging.getLogger(__name__)

SPLITS = ("train", "query", "gallery")


@dataclass
class ImageAttention:
    """The selected parts of one image and the weights the model gave them."""

    record: ImageRecord
    boxes: list[PartBox]  # selected top-D boxes, in mask order (slot i <-> weights[i])
    candidates: list[str]  # the class labels of all candidate boxes of the image
    weights: np.ndarray  # (D,) PAM weights; 0 on padding and empty parts
    valid: np.ndarray  # (D,) bool: the part's mask is non-empty
    heat_fp: np.ndarray | None = None  # (h, w) channel mean of F_p
    heat_fg: np.ndarray | None = None  # (h, w) channel mean of F_g

    @property
    def num_candidates(self) -> int:
        return len(self.candidates)


def check_attention_run(run: LoadedRun) -> None:
    if not run.model.spec.uses_parts:
        raise PganError(f"{run.checkpoint} is a {run.cfg.model.variant!r} checkpoint: it has no part attention; "
                        "give a pgan, nopam or grid checkpoint")


def _grid_boxes(run: LoadedRun, width: int, height: int) -> list[PartBox]:
    fh, fw = run.feat_size
    boxes = []
    for i, m in enumerate(grid_masks(fh, fw, run.model.num_parts)):
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        boxes.append(PartBox(cols[0] * width / fw, rows[0] * height / fh, (cols[-1] + 1) * width / fw,
                             (rows[-1] + 1) * height / fh, 1.0, f"cell{i}"))
    return boxes


def candidate_boxes(run: LoadedRun, record: ImageRecord) -> tuple[list[PartBox], list[str]]:
    """``(selected top-D boxes, labels of all candidates)``; grid cells for the grid variant."""
    if run.model.spec.grid:
        with Image.open(record.path) as im:
            width, height = im.size
        boxes = _grid_boxes(run, width, height)
        return boxes, [b.label for b in boxes]
    item = run.parts.boxes_for(record.key) if hasattr(run.parts, "boxes_for") else None
    if item is None:
        if getattr(run.parts, "missing", "error") == "error":
            where = getattr(run.parts, "path", "the part source")
            raise PganError(f"part file {where} has no boxes for image {record.key!r}")
        return [], []
    return select_top_d(item.boxes, run.model.num_parts), [b.label for b in item.boxes]


@torch.no_grad()
def image_attention(run: LoadedRun, records: list[ImageRecord], batch_size: int = 32,
                    maps: bool = True) -> list[ImageAttention]:
    """Selected boxes, PAM weights and (optionally) heatmaps of ``records`` under ``run``'s model."""
    check_attention_run(run)
    selected = [candidate_boxes(run, r) for r in records]  # checks the part file before any work
    model = run.model.eval()
    loader = DataLoader(run.image_set(records), batch_size=batch_size, shuffle=False)
    out: list[ImageAttention] = []
    for batch in loader:
        masks = batch.get("masks")
        res = model(batch["image"], masks, return_maps=maps)
        weights = res.part_weights.float()
        if masks is None:  # grid: the model's own cells
            fh, fw = run.feat_size
            masks = torch.from_numpy(grid_masks(fh, fw, model.num_parts)).expand(len(weights), -1, -1, -1)
        valid = masks.flatten(2).amax(-1) > 0
        if maps:
            heat_fp = res.part_map.float().mean(1)
            heat_fg = heat_fp / (1.0 + torch.einsum("bd,bdhw->bhw", weights, masks.float()))
        for j, idx in enumerate(batch["index"].tolist()):
            boxes, labels = selected[idx]
            out.append(ImageAttention(records[idx], boxes, labels, weights[j].numpy(), valid[j].numpy(),
                                      heat_fp[j].numpy() if maps else None, heat_fg[j].numpy() if maps else None))
    return out


def _agg_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> Path:
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=fig.dpi)
    return path


def _upsample(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    t = torch.nn.functional.interpolate(torch.from_numpy(heat)[None, None], size=(height, width),
                                        mode="bilinear", align_corners=False)
    return t[0, 0].numpy()


def draw_attention(item: ImageAttention, out_png: Path, variant: str = "pgan") -> Path:
    """Four panels: image with top-D boxes (class, score), PAM weights, ``F_g`` and ``F_p`` heatmaps."""
    import matplotlib

    with Image.open(item.record.path) as im:
        image = np.asarray(im.convert("RGB"))
    h, w = image.shape[:2]
    colors = matplotlib.colormaps["tab10"]
    fig = _agg_figure(13, 3.6)
    fig.set_layout_engine("constrained")
    axes = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1, 1.2, 1, 1]})
    ax = axes[0]
    ax.imshow(image)
    for i, b in enumerate(item.boxes):
        c = colors(i % 10)
        ax.add_patch(matplotlib.patches.Rectangle((b.x1, b.y1), b.x2 - b.x1, b.y2 - b.y1, fill=False, lw=1.5,
                                                  ec=c, ls="-" if item.valid[i] else ":"))
        ax.text(b.x1, b.y1, str(i + 1), color="white", fontsize=6, va="bottom",
                bbox={"facecolor": c, "pad": 0.6, "lw": 0})
    ax.set_title(f"top-{len(item.boxes)} of {item.num_candidates} candidate parts", fontsize=9)
    ax = axes[1]
    n = len(item.boxes)
    if n:
        ys = np.arange(n)[::-1]
        ax.barh(ys, item.weights[:n], color=[colors(i % 10) for i in range(n)])
        ax.set_yticks(ys, [f"{i + 1} {b.label} ({b.score:.2f})" for i, b in enumerate(item.boxes)], fontsize=7)
        nv = int(item.valid.sum())
        if nv:
            ax.axvline(1.0 / nv, color="gray", ls="--", lw=1, label=f"uniform 1/{nv}")
            ax.legend(fontsize=7, loc="lower right")
        for y, wt in zip(ys, item.weights[:n]):
            ax.text(wt, y, f" {wt:.2f}", va="center", fontsize=7)
        ax.set_xlim(0, max(1e-6, float(item.weights.max())) * 1.3)
    ax.set_title("PAM weight per part (class, score)" if variant != "nopam" else "part weights (no PAM: uniform)",
                 fontsize=9)
    ax.tick_params(axis="x", labelsize=7)
    vmax = float(item.heat_fp.max()) if item.heat_fp is not None else 1.0
    for ax, heat, name in ((axes[2], item.heat_fg, "F_g (global)"), (axes[3], item.heat_fp, "F_p (part-guided)")):
        ax.imshow(image)
        ax.imshow(_upsample(heat, h, w), cmap="jet", alpha=0.5, vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
        ax.set_title(f"{name} channel mean", fontsize=9)
    for ax in (axes[0], axes[2], axes[3]):
        ax.set_axis_off()
    r = item.record
    fig.suptitle(f"{r.key}   id {r.pid}  camera {r.camid}   [{variant}]", fontsize=10)
    return save_figure(fig, out_png)


def _records_by_key(run: LoadedRun, keys: list[str]) -> list[ImageRecord]:
    everything = run.dataset.train + run.dataset.query + run.dataset.gallery
    out = []
    for key in keys:
        rec = find_record(everything, key)
        if rec is None:
            raise PganError(f"image {key!r} is not in dataset {run.cfg.data.dataset} at {run.cfg.data.root}; "
                            f"give a key like {everything[0].key!r} or its file name")
        out.append(rec)
    return out


def attention_figures(checkpoint: str | Path, out_dir: str | Path, keys: list[str] | None = None,
                      num: int = 4, split: str = "query", seed: int = 0) -> dict:
    """Per-image attention figures for ``keys`` (or ``num`` random images of ``split``) + report."""
    if split not in SPLITS:
        raise PganError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = prepare_out_dir(out_dir)
    run = load_run(checkpoint)
    check_attention_run(run)
    if keys:
        records = _records_by_key(run, keys)
    else:
        pool = getattr(run.dataset, split)
        if num < 1 or not pool:
            raise PganError(f"--num must be at least 1 and the {split} split non-empty (num={num})")
        rng = np.random.default_rng(seed)
        records = [pool[i] for i in sorted(rng.choice(len(pool), min(num, len(pool)), replace=False))]
    items = image_attention(run, records)
    files, entries = [], []
    for i, item in enumerate(items, 1):
        name = f"attention_{i:02d}_{Path(item.record.key).stem}.png"
        draw_attention(item, out / name, run.cfg.model.variant)
        files.append(name)
        entries.append({"key": item.record.key, "pid": item.record.pid, "camid": item.record.camid,
                        "figure": name, "num_candidates": item.num_candidates,
                        "parts": [{"slot": j + 1, "label": b.label, "score": b.score,
                                   "weight": float(item.weights[j]), "valid": bool(item.valid[j])}
                                  for j, b in enumerate(item.boxes)]})
    atomic_write_json(out / "attention.json", {"checkpoint": str(checkpoint), "variant": run.cfg.model.variant,
                                               "images": entries})
    text = ("Left to right: the top-D candidate part boxes (class and detector score; dotted = empty mask), "
            "the PAM weight of each part (dashed: uniform weight), the channel mean of the global feature F_g "
            "and of the part-guided feature F_p = F_g (1 + sum_i w_i M_i), upsampled and overlaid "
            "(same colour scale).")
    write_report(out, "Part attention", [Section("Images", [text], images=files, files=["attention.json"])],
                 {"checkpoint": str(checkpoint), "variant": run.cfg.model.variant})
    log.info("wrote %d attention figures to %s", len(files), out)
    return {"figures": files, "images": entries}


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
    fig = _agg_figure(max(6.0, 0.55 * len(sel) + 2), 3.6)
    ax = fig.subplots()
    ax.bar(range(len(sel)), [c.selected for c in sel], color="tab:blue")
    ax.set_xticks(range(len(sel)), [c.label for c in sel], rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("times selected among top-D")
    ax.set_title(f"Part selection frequency ({stats.num_images} images, D={stats.num_parts})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out / "selection_counts.png")
    fig = _agg_figure(max(6.0, 0.55 * len(sel) + 2), 3.8)
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
    atomic_write_text(out / "summary.md", summary)
    figures = _plot_stats(stats, out, variant)
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
