"""What the part attention sees, per image (``pgan viz attention``): the paper's Figs. 3(c) and 8(d, e).

For every image the top-D candidate boxes are selected exactly as the model's
masks are built (:func:`pgan.parts.selection.select_top_d`), so slot ``i`` of
the PAM weights belongs to selected box ``i``. The ``F_p`` heatmap is the
channel mean of ``part_map`` upsampled to the image; since
``F_p = F_g (1 + sum_i w_i M_i)``, the channel mean of ``F_g`` is recovered
from it without a second backbone pass. Per-class statistics over a split
(``pgan analyze attention``, Fig. 11) are in :mod:`pgan.viz.attention_stats`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pgan.data.records import ImageRecord
from pgan.errors import PganError
from pgan.models.part_attention import attention_map
from pgan.parts.boxfile import PartBox
from pgan.parts.selection import select_top_d
from pgan.utils.atomic import atomic_open, atomic_write_json
from pgan.utils.grid import grid_masks
from pgan.viz.ranks import LoadedRun, find_record, load_run
from pgan.viz.report_html import Section, prepare_out_dir, write_report

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
            heat_fg = heat_fp / (1.0 + attention_map(masks.float(), weights, getattr(model, "part_map", "raw")))
        for j, idx in enumerate(batch["index"].tolist()):
            boxes, labels = selected[idx]
            out.append(ImageAttention(records[idx], boxes, labels, weights[j].numpy(), valid[j].numpy(),
                                      heat_fp[j].numpy() if maps else None, heat_fg[j].numpy() if maps else None))
    return out


def agg_figure(width: float, height: float):
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
    fig = agg_figure(13, 3.6)
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
