"""Rank-list figures: a query and its top-K gallery, correct matches framed green, wrong ones red."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from pgan.utils.atomic import atomic_open

__all__ = ["BOX", "RankRow", "draw_rank_compare", "draw_rank_rows", "top_k_valid"]

GREEN, RED, BLUE, GREY = (40, 170, 60), (210, 40, 40), (60, 90, 200), (150, 150, 150)
BOX = (255, 200, 0)


@dataclass
class RankRow:
    query_path: Path
    query_caption: str
    gallery_paths: list[Path]
    gallery_captions: list[str]
    correct: list[bool | None]  # None: unknown (grey frame), e.g. a query photo without an identity
    query_boxes: list[list[float]] | None = None  # part boxes [x1, y1, x2, y2] in image pixels, drawn if given
    gallery_boxes: list[list[list[float]]] | None = None


def top_k_valid(q_feat: torch.Tensor, g_feats: torch.Tensor, q_pid: int, q_cam: int, g_pids: np.ndarray,
                g_camids: np.ndarray, k: int = 5, remove_same_camera: bool = True) -> np.ndarray:
    """Indices of the ``k`` nearest gallery items (cosine) after the cross-camera filter (pure)."""
    sims = (g_feats @ q_feat).numpy().astype(np.float64)
    if remove_same_camera:
        sims[(g_pids == q_pid) & (g_camids == q_cam)] = -np.inf
    order = np.argsort(-sims, kind="stable")
    order = order[np.isfinite(sims[order])]
    return order[:k]


def _tile(path: Path, size: int, frame: tuple[int, int, int], caption: str, border: int = 5,
          boxes: list[list[float]] | None = None) -> Image.Image:
    tile = Image.new("RGB", (size + 2 * border, size + 2 * border + 16), "white")
    with Image.open(path) as im:
        sx, sy = size / im.width, size / im.height
        tile.paste(im.convert("RGB").resize((size, size)), (border, border))
    draw = ImageDraw.Draw(tile)
    for x1, y1, x2, y2 in (b[:4] for b in boxes or []):
        draw.rectangle([border + x1 * sx, border + y1 * sy, border + x2 * sx, border + y2 * sy], outline=BOX)
    draw.rectangle([0, 0, size + 2 * border - 1, size + 2 * border - 1], outline=frame, width=border)
    draw.text((border, size + 2 * border + 2), caption, fill=(0, 0, 0))
    return tile


def _save_png(canvas: Image.Image, out_path: str | Path) -> Path:
    out_path = Path(out_path)
    with atomic_open(out_path, "wb") as fh:
        canvas.save(fh, format="PNG")
    return out_path


def _row_tiles(row: RankRow, size: int, with_query: bool = True) -> list[Image.Image]:
    tiles = [_tile(row.query_path, size, BLUE, row.query_caption, boxes=row.query_boxes)] if with_query else []
    boxes = row.gallery_boxes or [None] * len(row.gallery_paths)
    return tiles + [_tile(p, size, GREY if ok is None else GREEN if ok else RED, c, boxes=b)
                    for p, c, ok, b in zip(row.gallery_paths, row.gallery_captions, row.correct, boxes)]


def draw_rank_rows(rows: list[RankRow], out_path: str | Path, size: int = 112, title: str = "") -> Path:
    """One PNG with one row per query: ``[query | top-1 ... top-K]``."""
    tiles = [_row_tiles(r, size) for r in rows]
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
    return _save_png(canvas, out_path)


def draw_rank_compare(rows_a: list[RankRow], rows_b: list[RankRow], out_path: str | Path,
                      labels: tuple[str, str] = ("A", "B"), size: int = 112, title: str = "") -> Path:
    """Two models side by side for the same queries (the paper's Fig. 9):
    ``[query | A top-1 ... top-K || B top-1 ... top-K]``, one row per query."""
    if len(rows_a) != len(rows_b) or not rows_a:
        raise ValueError("rows_a and rows_b must list the same, non-empty set of queries")
    k = max(max(len(r.gallery_paths) for r in rows_a), max(len(r.gallery_paths) for r in rows_b), 1)
    probe = _tile(rows_a[0].query_path, size, BLUE, "")
    tw, th = probe.size
    gap_q, gap_ab = 12, 28
    x_a = tw + gap_q
    x_b = x_a + k * tw + gap_ab
    head = (18 if title else 0) + 16
    canvas = Image.new("RGB", (x_b + k * tw + 4, head + len(rows_a) * th), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 3), title, fill=(0, 0, 0))
    draw.text((x_a + 2, head - 14), labels[0], fill=(0, 0, 0))
    draw.text((x_b + 2, head - 14), labels[1], fill=(0, 0, 0))
    draw.line([(x_b - gap_ab // 2, head), (x_b - gap_ab // 2, canvas.height)], fill=(150, 150, 150), width=2)
    for i, (ra, rb) in enumerate(zip(rows_a, rows_b)):
        y = head + i * th
        canvas.paste(_tile(ra.query_path, size, BLUE, ra.query_caption), (0, y))
        for j, tile in enumerate(_row_tiles(ra, size, with_query=False)):
            canvas.paste(tile, (x_a + j * tw, y))
        for j, tile in enumerate(_row_tiles(rb, size, with_query=False)):
            canvas.paste(tile, (x_b + j * tw, y))
    return _save_png(canvas, out_path)
