"""Rank-list figures: a query and its top-K gallery, correct matches framed green, wrong ones red."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pgan.utils.atomic import atomic_open

GREEN, RED, BLUE = (40, 170, 60), (210, 40, 40), (60, 90, 200)


@dataclass
class RankRow:
    query_path: Path
    query_caption: str
    gallery_paths: list[Path]
    gallery_captions: list[str]
    correct: list[bool]


def top_k_valid(q_feat: torch.Tensor, g_feats: torch.Tensor, q_pid: int, q_cam: int, g_pids: np.ndarray,
                g_camids: np.ndarray, k: int = 5, remove_same_camera: bool = True) -> np.ndarray:
    """Indices of the ``k`` nearest gallery items (cosine) after the cross-camera filter (pure)."""
    sims = (g_feats @ q_feat).numpy().astype(np.float64)
    if remove_same_camera:
        sims[(g_pids == q_pid) & (g_camids == q_cam)] = -np.inf
    order = np.argsort(-sims, kind="stable")
    order = order[np.isfinite(sims[order])]
    return order[:k]


def _tile(path: Path, size: int, frame: tuple[int, int, int], caption: str, border: int = 5) -> Image.Image:
    tile = Image.new("RGB", (size + 2 * border, size + 2 * border + 16), "white")
    with Image.open(path) as im:
        tile.paste(im.convert("RGB").resize((size, size)), (border, border))
    draw = ImageDraw.Draw(tile)
    draw.rectangle([0, 0, size + 2 * border - 1, size + 2 * border - 1], outline=frame, width=border)
    draw.text((border, size + 2 * border + 2), caption, fill=(0, 0, 0))
    return tile


def draw_rank_rows(rows: list[RankRow], out_path: str | Path, size: int = 112, title: str = "") -> Path:
    """One PNG with one row per query: ``[query | top-1 ... top-K]``."""
    tiles = [[_tile(r.query_path, size, BLUE, r.query_caption)]
             + [_tile(p, size, GREEN if ok else RED, c)
                for p, c, ok in zip(r.gallery_paths, r.gallery_captions, r.correct)] for r in rows]
    tw, th = tiles[0][0].size
    cols = max(len(t) for t in tiles)
    head = 18 if title else 0
    canvas = Image.new("RGB", (cols * tw + 12, len(rows) * th + head), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=(0, 0, 0))
    for i, row in enumerate(tiles):
        for j, tile in enumerate(row):
            canvas.paste(tile, (j * tw + (12 if j else 0), head + i * th))
    out_path = Path(out_path)
    with atomic_open(out_path, "wb") as fh:
        canvas.save(fh, format="PNG")
    return out_path
