"""Photo realism for the synthetic benchmark (``SynthConfig.realism``, 0..1): texture, reflections,
blur and compression, night, and clutter that is not part of the vehicle.

The standard synthetic vehicles are flat colour on a smooth road, which makes training-free saliency
part proposals land on parts far more easily than on real photos (issue 20). ``realism`` scales these
nuisances (amplitudes and probabilities alike; 0 calls nothing here):

* clutter, drawn behind the vehicle: road markings (dashes, crossings, arrows, patches), neighbouring
  vehicles cut by the frame (with their own window, wheel and light), poles and sign boards; after the
  vehicle, sometimes an occluder over its edge (a pedestrian, a pole, a parked car's corner);
* texture: a low-frequency paint shading field, finer mottling and grain on the vehicle, asphalt grain
  on the road; specular streaks on the glass, highlight bands and small glints on the body;
* a shadow cast across the scene;
* night, with probability ``0.35 * realism``: darker, a sodium-orange or blue cast, glow around the
  vehicle's lights (red for red lamps) and street lamps, more noise;
* low resolution (downscale-upscale, as for a distant vehicle), gaussian or motion blur, and JPEG
  re-encoding at a random quality (the generator then saves it as JPEG at quality 90, as always).

Every draw comes from the image's own realism generator (the generator makes it from the dataset seed,
the identity and the image index, apart from the drawing's), so the vehicle, its pose and its
ground-truth boxes are exactly those of ``realism = 0``: realism changes pixels, never the part
annotations. The generator tracks visibility for its own occluder only; the edge occluder here is
placed so that it hides at most :data:`MAX_HIDDEN` of any ground-truth box, and the boxes (and their
visible fractions) are left unchanged.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pgan.parts.boxfile import PartBox
from pgan.synth.scene import CAR_COLOURS, GLASS, TYRE, Colour, Rect, shade

NIGHT_P = 0.35  # probability of a night image at realism 1
MAX_HIDDEN = 0.1  # the edge occluder hides at most this fraction of any ground-truth box
GLASS_LABELS = ("windglass", "cartopwindow")
MARKING_COLOURS: tuple[Colour, ...] = ((235, 235, 230), (230, 190, 50))


def _colour(c: Colour | np.ndarray, f: float) -> Colour:
    return shade(tuple(int(v) for v in c), f)  # type: ignore[arg-type]


def draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, r: float, n: int) -> None:
    """Background distractors on the ``n`` x ``n`` canvas, drawn before (behind) the vehicle."""
    for _ in range(int(rng.poisson(2.5 * r))):  # road markings
        kind, col = int(rng.integers(4)), _colour(MARKING_COLOURS[int(rng.integers(2))], rng.uniform(0.55, 1.0))
        x, y = rng.uniform(0, n), rng.uniform(0.45, 1.0) * n
        if kind == 0:  # a dashed lane line
            dx, dy, wd = rng.uniform(0.6, 1.0), rng.uniform(-0.3, 0.3), int(rng.uniform(0.01, 0.025) * n) + 1
            for t in np.arange(-1.0, 1.0, 0.12):
                p0 = (x + t * n * dx, y + t * n * dy)
                draw.line([p0, (p0[0] + 0.07 * n * dx, p0[1] + 0.07 * n * dy)], fill=col, width=wd)
        elif kind == 1:  # a pedestrian crossing
            sw, sh = rng.uniform(0.03, 0.06) * n, rng.uniform(0.08, 0.2) * n
            for k in range(int(rng.integers(4, 8))):
                draw.rectangle((x + 2 * k * sw - n / 2, y, x + (2 * k + 1) * sw - n / 2, y + sh), fill=col)
        elif kind == 2:  # an arrow
            s = rng.uniform(0.05, 0.12) * n
            draw.polygon([(x, y - 2 * s), (x + s, y - s), (x + 0.4 * s, y - s), (x + 0.4 * s, y + s),
                          (x - 0.4 * s, y + s), (x - 0.4 * s, y - s), (x - s, y - s)], fill=col)
        else:  # a repaired patch or a manhole
            a, b = rng.uniform(0.03, 0.12, 2) * n
            draw.ellipse((x - a, y - b, x + a, y + b), fill=_colour(rng.uniform(40, 110, 3), 1.0))
    for _ in range(int(rng.binomial(2, 0.45 * r))):  # a neighbouring vehicle cut by the frame
        w, h = rng.uniform(0.3, 0.55) * n, rng.uniform(0.25, 0.45) * n
        left, yc = bool(rng.random() < 0.5), rng.uniform(0.25, 0.85) * n
        x = -rng.uniform(0.5, 0.8) * w if left else n - rng.uniform(0.2, 0.5) * w
        body = _colour(CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))], rng.uniform(0.7, 1.1))
        draw.rounded_rectangle((x, yc - h / 2, x + w, yc + h / 2), radius=h / 5, fill=body)
        draw.rectangle((x + 0.2 * w, yc - 0.42 * h, x + 0.8 * w, yc - 0.08 * h), fill=GLASS)
        for wx in (x + 0.2 * w, x + 0.8 * w):
            draw.ellipse((wx - 0.1 * h * 1.4, yc + 0.25 * h, wx + 0.1 * h * 1.4, yc + 0.55 * h), fill=TYRE)
        lx = x + w - 0.08 * w if left else x + 0.02 * w
        lamp = (200, 35, 35) if rng.random() < 0.5 else (245, 240, 215)
        draw.rounded_rectangle((lx, yc - 0.05 * h, lx + 0.06 * w, yc + 0.08 * h), radius=2, fill=lamp)
    if rng.random() < 0.5 * r:  # a pole with a sign board
        x, w = rng.uniform(0.05, 0.95) * n, rng.uniform(0.012, 0.03) * n
        draw.rectangle((x, rng.uniform(0.0, 0.3) * n, x + w, n), fill=_colour(rng.uniform(60, 150, 3), 1.0))
        s = rng.uniform(0.05, 0.1) * n
        sign = ((30, 70, 170), (200, 40, 40), (30, 120, 60), (235, 235, 235))[int(rng.integers(4))]
        yy = rng.uniform(0.02, 0.3) * n
        draw.rectangle((x - s, yy, x + w + s, yy + 1.2 * s), fill=sign)


def _hidden(a: Rect, b: Rect) -> float:
    """The fraction of box ``a`` that ``b`` covers."""
    area = (a[2] - a[0]) * (a[3] - a[1])
    ov = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ov / area if area > 0 else 0.0


def edge_occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, r: float, n: int, vb: Rect,
                  boxes: list[Rect]) -> None:
    """Maybe draw an occluder over the left, right or bottom edge of the vehicle box ``vb`` (canvas
    pixels); a candidate that would hide more than :data:`MAX_HIDDEN` of a box in ``boxes`` is
    dropped (up to six are tried)."""
    if rng.random() >= 0.35 * r:
        return
    x1, y1, x2, y2 = vb
    vw = x2 - x1
    for _ in range(6):
        kind, left = int(rng.integers(3)), bool(rng.random() < 0.5)
        edge = x1 if left else x2
        if kind == 0:  # a pedestrian
            w, h = rng.uniform(0.08, 0.14) * n, rng.uniform(0.35, 0.6) * n
            cx, foot = edge + rng.uniform(-0.6, 0.6) * w, y2 + rng.uniform(0.0, 0.08) * n
            rect = (cx - w / 2, foot - h, cx + w / 2, foot)
        elif kind == 1:  # a pole
            w = rng.uniform(0.02, 0.05) * n
            x = edge + (rng.uniform(-0.02, 0.08) if left else rng.uniform(-0.08, 0.02)) * vw
            rect = (x, -1.0, x + w, n + 1.0)
        else:  # a parked car's corner rising from the bottom
            w, h = rng.uniform(0.2, 0.35) * n, rng.uniform(0.12, 0.25) * n
            x = edge - w + rng.uniform(0.05, 0.2) * vw if left else edge - rng.uniform(0.05, 0.2) * vw
            rect = (x, n - h, x + w, n + 1.0)
        if all(_hidden(b, rect) <= MAX_HIDDEN for b in boxes):
            break
    else:
        return
    a, b, c, d = rect
    if kind == 0:
        w = c - a
        head = w * 0.35
        shirt = _colour(rng.uniform(20, 230, 3), 1.0)
        trousers = _colour(rng.uniform(20, 90, 3), 1.0)
        draw.rectangle((a + 0.2 * w, b + 0.55 * (d - b), c - 0.2 * w, d), fill=trousers)
        draw.rounded_rectangle((a, b + head * 2, c, b + 0.6 * (d - b)), radius=w / 4, fill=shirt)
        skin = _colour((200, 160, 130), rng.uniform(0.5, 1.1))
        draw.ellipse(((a + c) / 2 - head, b, (a + c) / 2 + head, b + 2 * head), fill=skin)
    elif kind == 1:
        draw.rectangle(rect, fill=_colour(rng.uniform(50, 160, 3), 1.0))
    else:
        col = _colour(CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))], rng.uniform(0.7, 1.1))
        draw.rounded_rectangle(rect, radius=(d - b) / 4, fill=col)
        draw.rectangle((a + 0.15 * (c - a), b + 0.1 * (d - b), c - 0.15 * (c - a), b + 0.45 * (d - b)), fill=GLASS)


def _smooth(rng: np.random.Generator, cells: int, size: int) -> np.ndarray:
    """A smooth zero-mean field of about unit spread: ``cells`` x ``cells`` normals, bicubic-upscaled."""
    small = Image.fromarray(rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32), "F")
    return np.asarray(small.resize((size, size), Image.BICUBIC), np.float32)


def _band(size: int, angle: float, centre: tuple[float, float], width: float) -> np.ndarray:
    """A soft straight band (gaussian across) through ``centre`` at ``angle`` (radians), ``width`` px."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    dist = (xx - centre[0]) * np.sin(angle) - (yy - centre[1]) * np.cos(angle)
    return np.exp(-((dist / max(width, 0.5)) ** 2))


def _blob(size: int, centre: tuple[float, float], sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * max(sigma, 0.5) ** 2))


def _box_mask(size: int, b: PartBox) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[int(b.y1):int(np.ceil(b.y2)), int(b.x1):int(np.ceil(b.x2))] = 1.0
    return m


def add_texture(a: np.ndarray, rng: np.random.Generator, r: float, veh: np.ndarray, boxes: list[PartBox]) -> None:
    """Paint shading, mottling, grain, specular streaks and glints, in place on the float image ``a``."""
    size, s = a.shape[0], a.shape[0] / 160
    field = 0.2 * r * _smooth(rng, 5, size) + 0.06 * r * _smooth(rng, max(4, size // 8), size)
    rows = np.flatnonzero(veh.max(1) > 0.5)
    top, bot = (rows[0], rows[-1]) if rows.size else (0, size - 1)
    ramp = (np.arange(size, dtype=np.float32) - top) / max(1, bot - top)
    field += r * rng.uniform(0.05, 0.2) * (0.5 - np.clip(ramp, 0, 1))[:, None]  # sky above, road below
    a *= (1.0 + veh * field)[..., None]
    grain = rng.normal(0.0, 1.0, a.shape).astype(np.float32)
    a += grain * (r * (rng.uniform(1.0, 3.0) + veh * rng.uniform(1.0, 4.0)))[..., None]  # road, more on paint
    spec = np.zeros(veh.shape, np.float32)
    glass = [b for b in boxes if b.label in GLASS_LABELS]
    glass_mask = np.zeros_like(veh)
    for b in glass:
        m = _box_mask(size, b) * veh
        glass_mask = np.maximum(glass_mask, m)
        for _ in range(int(rng.integers(1, 3))):
            c = (rng.uniform(b.x1, b.x2), rng.uniform(b.y1, b.y2))
            w = rng.uniform(0.06, 0.2) * (b.x2 - b.x1)
            spec += m * rng.uniform(0.3, 0.75) * _band(size, rng.uniform(0.35, 1.2), c, w)
    body = veh * (1.0 - glass_mask)
    if rows.size:
        for _ in range(int(rng.integers(1, 3))):
            c = (size / 2, rng.uniform(top, bot))
            gain, angle = rng.uniform(0.12, 0.4), rng.uniform(-0.25, 0.25)
            spec += body * gain * _band(size, angle, c, rng.uniform(1.5, 6) * s)
        ys, xs = np.nonzero(body > 0.5)
        for i in rng.integers(0, ys.size, int(rng.integers(0, 4))) if ys.size else []:
            spec += rng.uniform(0.5, 0.9) * _blob(size, (float(xs[i]), float(ys[i])), rng.uniform(0.6, 1.8) * s)
    a += (np.clip(r * spec, 0, 0.95)[..., None]) * (255.0 - np.clip(a, 0, 255))


def _shadow(a: np.ndarray, rng: np.random.Generator, r: float) -> None:
    """A soft-edged shadow (a building's or a tree's) across part of the scene."""
    size = a.shape[0]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    t = rng.uniform(0, 2 * np.pi)
    dist = (xx - rng.uniform(0, size)) * np.cos(t) + (yy - rng.uniform(0, size)) * np.sin(t)
    edge = rng.uniform(1.0, 6.0) * size / 160
    inside = 1.0 / (1.0 + np.exp(-np.clip(dist / edge, -30, 30)))
    a *= (1.0 - r * rng.uniform(0.25, 0.5) * inside)[..., None]


def _night(a: np.ndarray, rng: np.random.Generator, r: float, boxes: list[PartBox]) -> None:
    """Dark, colour-cast, glowing lights and street lamps, noisier."""
    size, s = a.shape[0], a.shape[0] / 160
    lamps = []
    for b in boxes:
        if b.label == "carlight":
            m = a[int(b.y1):int(np.ceil(b.y2)), int(b.x1):int(np.ceil(b.x2))].reshape(-1, 3).mean(0)
            red = m.size == 3 and m[0] > 1.4 * max(m[1], 1.0)
            lamps.append(((b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2, 0.4 * max(b.x2 - b.x1, b.y2 - b.y1),
                          (255.0, 50.0, 35.0) if red else (255.0, 240.0, 205.0)))
    for _ in range(int(rng.integers(0, 3))):
        x, y = rng.uniform(0, size), rng.uniform(0, 0.35 * size)
        lamps.append((x, y, rng.uniform(3, 10) * s, (255.0, 200.0, 120.0)))  # street lamps
    cast = np.asarray((1.0, 0.72, 0.4) if rng.random() < 0.5 else (0.62, 0.78, 1.15), np.float32)
    dark = 1.0 - r * rng.uniform(0.55, 0.8)
    a *= dark * (1.0 + r * (cast - 1.0))
    for x, y, sig, col in lamps:
        glow = r * rng.uniform(0.45, 0.85) * _blob(size, (x, y), sig)
        a += glow[..., None] * (np.asarray(col, np.float32) - a)
    a += rng.normal(0.0, r * rng.uniform(4.0, 10.0), a.shape).astype(np.float32)


def _motion_blur(a: np.ndarray, length: float, angle: float) -> np.ndarray:
    """Mean of the image shifted along a line (edge pixels repeated)."""
    taps = max(2, int(round(length)))
    pad = taps
    p = np.pad(a, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    h, w = a.shape[:2]
    out = np.zeros_like(a)
    for t in np.linspace(-length / 2, length / 2, taps):
        dx, dy = int(round(t * np.cos(angle))), int(round(t * np.sin(angle)))
        out += p[pad + dy:pad + dy + h, pad + dx:pad + dx + w]
    return out / taps


def finish(img: Image.Image, rng: np.random.Generator, r: float, veh: np.ndarray,
           boxes: list[PartBox]) -> Image.Image:
    """The image-level nuisances, in order: texture and reflections, a cast shadow, night, low
    resolution, blur, JPEG re-encoding. ``veh`` is the vehicle's visible mask in [0, 1] (image pixels),
    ``boxes`` its ground-truth boxes (read for the glass and lights, never changed)."""
    size = img.size[0]
    a = np.asarray(img, np.float32).copy()
    add_texture(a, rng, r, veh.astype(np.float32), boxes)
    if rng.random() < 0.4 * r:
        _shadow(a, rng, r)
    if rng.random() < NIGHT_P * r:
        _night(a, rng, r, boxes)
    out = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < 0.5 * r:  # a distant vehicle: fewer pixels than the frame
        small = max(16, round(size * (1.0 - r * rng.uniform(0.25, 0.65))))
        out = out.resize((small, small), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    if rng.random() < 0.5:
        sigma = r * rng.uniform(0.2, 1.4) * size / 160
        if sigma > 0.15:
            out = out.filter(ImageFilter.GaussianBlur(sigma))
    else:
        length, angle = r * rng.uniform(1.0, 6.0) * size / 160, rng.uniform(0, np.pi)
        if length >= 1.5:
            blurred = _motion_blur(np.asarray(out, np.float32), length, angle)
            out = Image.fromarray(np.clip(blurred + 0.5, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=int(round(92 - r * rng.uniform(0.0, 62.0))))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
