"""The scene around a synthetic vehicle: the palette, the camera's background and clutter, occluders and
photometric changes (the nuisance half of :mod:`pgan.synth.render`). Every random draw comes from the
``rng`` passed in, in a fixed order, so images are reproducible.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from pgan.synth.world import Camera

SUPERSAMPLE = 2  # drawn at 2x and box-filtered down: cheap anti-aliasing
Colour = tuple[int, int, int]
Rect = tuple[float, float, float, float]
CAR_COLOURS: tuple[Colour, ...] = (
    (232, 232, 228), (178, 182, 186), (30, 30, 33), (168, 28, 34), (32, 62, 140), (96, 99, 104),
    (214, 176, 40), (40, 98, 62), (112, 76, 52), (198, 184, 150), (214, 108, 32), (26, 36, 72))
GLASS, TYRE, SHADOW = (34, 42, 54), (22, 22, 24), (28, 28, 30)
CHROME, WHITE = (212, 212, 218), (240, 240, 240)


def shade(c: Colour, f: float) -> Colour:
    """``c`` darkened (f < 1) or lightened (f > 1), clipped to [0, 255]."""
    return tuple(int(min(255.0, max(0.0, x * f))) for x in c)  # type: ignore[return-value]


def background(rng: np.random.Generator, cam: Camera, d: float, n: int) -> Image.Image:
    """Road-like background: camera colour, low-frequency texture and clutter, all scaled by ``d``."""
    grid = rng.normal(0.0, 1.0, (6, 6, 1)) * 0.9 + rng.normal(0.0, 1.0, (6, 6, 3)) * 0.25
    ramp = np.linspace(1.0, -1.0, 6)[:, None, None] * 0.5
    small = np.asarray(cam.bg) + rng.normal(0.0, 6.0, 3) + 45 * d * (grid + ramp)
    img = Image.fromarray(np.clip(small, 0, 255).astype(np.uint8)).resize(
        (n // SUPERSAMPLE,) * 2, Image.BILINEAR).resize((n, n), Image.NEAREST)  # cheap; same after reduce()
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.poisson(6 * d))):
        kind, (x, y, x2, y2) = int(rng.integers(3)), rng.uniform(0, n, 4)
        if kind == 0:  # lane marks, kerbs, cables
            col = [(225, 225, 225), (225, 195, 60), (40, 40, 40)][int(rng.integers(3))]
            draw.line([(x, y), (x2, y2)], fill=col, width=int(rng.uniform(0.005, 0.03) * n) + 1)
        elif kind == 1:  # bushes, puddles, stains
            r = rng.uniform(0.04, 0.16, 2) * n
            tint = np.asarray(cam.bg) + rng.normal(0, 40) + rng.normal(0, 15, 3)
            col = tuple(int(v) for v in np.clip(tint, 0, 255))
            draw.ellipse((x - r[0], y - r[1], x + r[0], y + r[1]), fill=col)
        else:  # a fragment of another vehicle at the frame's edge
            col = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
            w, h = rng.uniform(0.25, 0.5) * n, rng.uniform(0.2, 0.4) * n
            x = -w * 0.6 if x < n / 2 else n - w * 0.4
            draw.rounded_rectangle((x, y - h / 2, x + w, y + h / 2), radius=h / 5, fill=col)
            draw.rectangle((x + w * 0.15, y - h * 0.4, x + w * 0.85, y - h * 0.1), fill=GLASS)
    return img


def occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, cam: Camera, d: float, n: int,
              vb: Rect) -> Rect | None:
    """Maybe draw a pole, a barrier or a sign board over the vehicle box ``vb``; returns its rectangle."""
    if rng.random() >= cam.occlusion * d:
        return None
    kind, (x1, y1, x2, y2), left = int(rng.integers(3)), vb, bool(rng.random() < 0.5)
    col = [(120, 120, 125), (200, 170, 40), (60, 90, 50), (150, 150, 150)][int(rng.integers(4))]
    if kind == 0:  # pole
        w = rng.uniform(0.04, 0.09) * n
        x = rng.uniform(x1, max(x1, x2 - w))
        r = (x, -1.0, x + w, n + 1.0)
    elif kind == 1:  # barrier or box rising from the bottom at one side
        h, w = (y2 - y1) * rng.uniform(0.2, 0.45), (x2 - x1) * rng.uniform(0.35, 0.7)
        r = (x1 - 0.1 * w, y2 - h, x1 + 0.9 * w, n + 1.0) if left else (x2 - 0.9 * w, y2 - h, x2 + w, n + 1.0)
    else:  # sign board hanging in at one side
        w, h = (x2 - x1) * rng.uniform(0.2, 0.35), (y2 - y1) * rng.uniform(0.25, 0.5)
        y = rng.uniform(y1, y2 - h)
        r = (x1 - 0.3 * w, y, x1 + 0.7 * w, y + h) if left else (x2 - 0.7 * w, y, x2 + 0.3 * w, y + h)
    r = tuple(float(v) for v in r)
    draw.rectangle(r, fill=col)
    draw.rectangle((r[0], r[1], r[2], r[1] + 0.03 * n), fill=shade(col, 0.6))
    return r  # type: ignore[return-value]


def photometric(img: Image.Image, rng: np.random.Generator, cam: Camera, d: float) -> Image.Image:
    """Brightness, contrast, colour cast, a shading ramp and pixel noise, scaled by ``d``."""
    a = np.asarray(img, np.float32)
    m = float(a.mean())
    contrast = 1 + d * (cam.contrast + rng.normal(0.0, 0.05))
    cast = 1 + d * (np.asarray(cam.cast) + rng.normal(0, 0.03, 3))
    gain = (1 + d * (cam.bright + rng.normal(0.0, 0.06))) * cast
    gx, gy = rng.uniform(-0.25, 0.25, 2) * d
    lin = np.linspace(-1.0, 1.0, a.shape[0], dtype=np.float32)
    a -= m
    a *= contrast
    a += m
    a *= 1 + gx * lin[None, :, None] + gy * lin[:, None, None]
    a *= gain.astype(np.float32)
    sigma = d * (cam.noise + rng.uniform(0.0, 3.0))
    if sigma > 0:
        # Triangular noise from two uniform bytes: about normal, and much cheaper to draw.
        tri = np.frombuffer(rng.bytes(2 * a.size), np.uint8).reshape(2, *a.shape)
        a += (tri[0].astype(np.float32) + tri[1] - 255.0) * np.float32(sigma / 104.1)
    a += 0.5
    return Image.fromarray(np.clip(a, 0, 255, out=a).astype(np.uint8))
