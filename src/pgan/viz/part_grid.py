"""A grid of photos with each part source's boxes: rows are images, columns are sources.

What a reader should see at a glance: where each annotation-free source puts its top-D parts on the
same photo (``docs/real_dev_parts.png`` is this figure on real val photos). Boxes are drawn in a
colour per rank (best first), so the boxes the model keeps (top D by score) stand out.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from pgan.parts.boxfile import PartBox
from pgan.parts.selection import select_top_d
from pgan.utils.atomic import atomic_open

# One colour per rank (best first), repeating after eight.
RANK_COLOURS = [(255, 60, 60), (255, 160, 0), (240, 230, 0), (60, 200, 60), (0, 200, 220), (60, 110, 255),
                (170, 80, 255), (255, 80, 200)]


def draw_part_grid(images: list[Path], boxes: dict[str, list[list[PartBox]]], out_png: str | Path,
                   d: int = 8, size: int = 150, title: str = "") -> Path:
    """``boxes[source][i]`` are image ``i``'s boxes from ``source`` (in its pixels); draws the top ``d``."""
    sources = list(boxes)
    pad, head = 4, 18
    w = len(sources) * (size + pad) + pad
    h = head + len(images) * (size + pad) + pad + (14 if title else 0)
    canvas = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(canvas)
    top = 14 if title else 0
    if title:
        draw.text((pad, 2), title, fill=(0, 0, 0))
    for c, source in enumerate(sources):
        draw.text((pad + c * (size + pad), top + 3), source, fill=(0, 0, 0))
    for r, path in enumerate(images):
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        sx, sy = size / rgb.width, size / rgb.height
        tile = rgb.resize((size, size))
        for c, source in enumerate(sources):
            x0, y0 = pad + c * (size + pad), top + head + r * (size + pad)
            canvas.paste(tile, (x0, y0))
            for rank, b in reversed(list(enumerate(select_top_d(boxes[source][r], d)))):
                draw.rectangle([x0 + b.x1 * sx, y0 + b.y1 * sy, x0 + b.x2 * sx - 1, y0 + b.y2 * sy - 1],
                               outline=RANK_COLOURS[rank % len(RANK_COLOURS)], width=2)
    out = Path(out_png)
    with atomic_open(out, "wb") as fh:
        canvas.save(fh, format="PNG")
    return out
