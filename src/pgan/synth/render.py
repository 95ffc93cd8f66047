"""Draw one synthetic vehicle image with PIL (the drawing half of :mod:`pgan.synth`).

A ``Family`` fixes the look (body type, colour, logo, lights); an ``Identity`` adds a few small parts
(windshield signs, ornaments, roof carrier, rims, ...), the only cue separating it from its near-twins;
a ``Camera`` fixes the nuisance (scale, shift, light, blur, noise, clutter, occlusion); all three are
sampled in :mod:`pgan.synth.world`. The scene around the vehicle (background, occluders,
photometric changes) and the palette are in :mod:`pgan.synth.scene`, the pen that draws in vehicle
coordinates and records the ground-truth boxes in :mod:`pgan.synth.pen`, and the identity parts and
the harder setting's distractors in :mod:`pgan.synth.parts`. This module draws the bodies (family
parts: windows, lights, logo, plate, mirrors, wheels) and puts one image together.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pgan.parts.boxfile import PartBox
from pgan.synth.parts import VIEWS, draw_distractors, draw_identity_parts
from pgan.synth.pen import Pen, draw_shape
from pgan.synth.realism import draw_clutter, edge_occluder, finish
from pgan.synth.scene import (
    CHROME,
    GLASS,
    SHADOW,
    SUPERSAMPLE,
    TYRE,
    WHITE,
    Colour,
    Rect,
    background,
    occluder,
    photometric,
    shade,
)

if TYPE_CHECKING:  # the world's dataclasses live with their samplers
    from pgan.synth.world import Camera, Family, Identity, IdPart

BOX_SCORES = ("visibility", "detector")


@dataclass(frozen=True)
class RenderStyle:
    """Switches of the harder setting; the defaults draw the standard benchmark unchanged.

    * ``extra_shared_parts``: draw family-level distractor parts (fog lights, vents, wipers,
      reflectors, exhaust, third brake light, door handles, marker lamp, fuel cap), about five
      more shared boxes per view, so the shared parts alone outnumber ``D = 8``.
    * ``id_part_scale``: identity parts are drawn this much smaller (about their centre; a roof
      carrier stays on the roof).
    * ``box_scores``: ``"visibility"`` scores a ground-truth box by its visible fraction (ties,
      i.e. most boxes, keep drawing order, so top-D prefers body parts, drawn first);
      ``"detector"`` multiplies that by a per-box uniform draw in [0.5, 1], like a detector's
      confidence, so top-D is a visibility-weighted random subset of the visible parts.
    * ``realism`` (0..1): texture, reflections, blur, compression, night and clutter
      (:mod:`pgan.synth.realism`); they change pixels only, never the boxes. 0 draws as before.
    """

    extra_shared_parts: bool = False
    id_part_scale: float = 1.0
    box_scores: str = "visibility"
    realism: float = 0.0

MIN_VISIBLE = 0.25  # parts less visible than this are left out of the ground truth


@dataclass(frozen=True)
class Body:
    """A body type: aspects are height/width; ``roof_hw``, ``belt`` shape the front/rear view,
    ``gh`` (greenhouse u: bottom-front, top-front, top-rear, bottom-rear) and ``roof`` the side view."""

    front_aspect: float
    side_aspect: float
    roof_hw: float
    belt: float
    gh: tuple[float, float, float, float]
    roof: float


BODIES: dict[str, Body] = {
    "sedan": Body(0.78, 0.60, 0.29, 0.47, (0.22, 0.34, 0.66, 0.80), 0.24),
    "suv": Body(0.90, 0.72, 0.35, 0.45, (0.17, 0.25, 0.89, 0.94), 0.20),
    "hatchback": Body(0.84, 0.66, 0.31, 0.46, (0.20, 0.31, 0.82, 0.90), 0.22),
    "van": Body(0.98, 0.80, 0.39, 0.50, (0.05, 0.12, 0.97, 0.98), 0.18),
    "pickup": Body(0.86, 0.64, 0.33, 0.46, (0.20, 0.28, 0.55, 0.58), 0.20),
}
def _light(pen: Pen, shape: str, b: Rect, col: Colour) -> None:
    u1, v1, u2, v2 = b
    if shape == "ellipse":
        pen.ellipse(*b, col)
    elif shape == "slant":
        inner, outer = (u1, u2) if u1 > 0.5 else (u2, u1)
        pen.poly([(inner, (v1 + v2) / 2), (outer, v1), (outer, v2), (inner, v2)], col)
    else:
        pen.rect(*b, col, r=0.3)


def _plate(pen: Pen, b: Rect, rng: np.random.Generator) -> None:
    """A plate with per-image random glyph strokes (unreadable; not an identity cue)."""
    u1, v1, u2, v2 = b
    pen.rect(*b, (30, 60, 170), r=0.2)
    gw, gh = (u2 - u1 - 0.02) / 6, v2 - v1
    for k in range(6):
        gu = u1 + 0.01 + k * gw
        for a, c, horiz in rng.uniform(0.0, 1.0, (int(rng.integers(1, 3)), 3)):
            if horiz < 0.5:
                y = v1 + gh * (0.2 + 0.55 * a)
                pen.rect(gu + gw * 0.2, y, gu + gw * 0.8, y + gh * 0.1, WHITE)
            else:
                x = gu + gw * (0.15 + 0.5 * a)
                pen.rect(x, v1 + gh * 0.2, x + gw * 0.25, v1 + gh * (0.45 + 0.35 * c), WHITE)
    pen.mark("plate", *b)


def _wheel_side(pen: Pen, uc: float, fam: Family, wheel: IdPart | None) -> None:
    """A side-view wheel: the family's plain rim, or the identity's rim colour and spokes."""
    r, vc = 0.16, 0.84
    ru = r * pen.a
    pen.ellipse(uc - ru * 1.12, vc - r * 1.12, uc + ru * 1.12, vc + r * 1.12, (18, 18, 20))
    pen.ellipse(uc - ru, vc - r, uc + ru, vc + r, TYRE)
    rim = wheel.colour if wheel else fam.rim
    pen.ellipse(uc - ru * 0.62, vc - r * 0.62, uc + ru * 0.62, vc + r * 0.62, rim)
    for k in range(wheel.count if wheel else 0):
        t = 2 * np.pi * k / wheel.count + 0.3  # type: ignore[union-attr]
        pen.line([(uc, vc), (uc + 0.58 * ru * np.cos(t), vc + 0.58 * r * np.sin(t))], wheel.colour2, 0.012)
    pen.ellipse(uc - ru * 0.18, vc - r * 0.18, uc + ru * 0.18, vc + r * 0.18, shade(rim, 0.5))
    pen.mark("wheel", uc - ru, vc - r, uc + ru, vc + r, "identity" if wheel else "shared")


def draw_side(pen: Pen, fam: Family, kinds: dict[str, IdPart]) -> Rect:
    """Side view (front of the car at u = 0 before mirroring); returns (roof v, B-pillar u, roof u1, u2)."""
    b, c = BODIES[fam.body], fam.colour
    g0, g1, g2, g3 = b.gh
    roof, belt = b.roof, 0.52
    pen.ellipse(-0.02, 0.9, 1.02, 1.04, SHADOW)
    pen.rect(0.0, 0.47, 1.0, 0.87, c, r=0.45)
    pen.poly([(g0, belt), (g1, roof), (g2, roof), (g3, belt)], shade(c, 0.93))
    pen.poly([(g0 + 0.035, belt - 0.01), (g1 + 0.015, roof + 0.035), (g2 - 0.012, roof + 0.035),
              (g3 - 0.03, belt - 0.01)], GLASS)
    um = g1 + (g2 - g1) * 0.45
    pen.rect(um, roof, um + 0.025, belt, shade(c, 0.85))
    pen.mark("windglass", g0 + 0.035, roof + 0.035, g3 - 0.03, belt - 0.01)
    pen.line([(0.05, 0.6), (0.95, 0.6)], shade(c, 0.75), 0.004)
    if fam.sunroof and "carrier" not in kinds:  # a roof carrier would hide it
        s1, s2, t = g1 + 0.06, g2 - 0.08, roof - 0.04
        pen.poly([(s1, roof + 0.01), (s2, roof + 0.01), (s2 - 0.02, t), (s1 + 0.02, t)], GLASS)
        pen.mark("cartopwindow", s1, t, s2, roof + 0.01)
    for u1, v1, col in ((0.0, 0.55, (250, 245, 215)), (0.955, 0.54, (205, 30, 35))):
        pen.rect(u1, v1, u1 + 0.045, v1 + 0.085, col, r=0.4)
        pen.mark("carlight", u1, v1, u1 + 0.045, v1 + 0.085)
    mu = g0 + 0.01
    pen.poly([(mu, belt - 0.01), (mu + 0.05, belt - 0.1), (mu + 0.07, belt - 0.06), (mu + 0.04, belt)],
             shade(c, 0.8))
    pen.mark("backmirror", mu, belt - 0.1, mu + 0.07, belt)
    for uc in (0.19, 0.81):
        _wheel_side(pen, uc, fam, kinds.get("wheel"))
    return roof, um, g1, g2


def draw_front_rear(pen: Pen, fam: Family, kinds: dict[str, IdPart], rear: bool,
                    rng: np.random.Generator) -> Rect:
    """Front or rear view; returns the window (top v, bottom v, top half width, bottom half width)."""
    b, c, wheel = BODIES[fam.body], fam.colour, kinds.get("wheel")
    belt, rw = b.belt, b.roof_hw
    pen.ellipse(-0.04, 0.93, 1.04, 1.05, SHADOW)
    for u1 in (0.07, 0.79):
        pen.rect(u1, 0.84, u1 + 0.14, 1.0, TYRE, r=0.4)
        if wheel:  # the rim shows a little on the tyre's outer side
            ur = u1 + 0.012 if u1 < 0.5 else u1 + 0.088
            pen.rect(ur, 0.9, ur + 0.04, 0.985, wheel.colour, r=0.3)
            pen.mark("wheel", u1, 0.87, u1 + 0.14, 1.0, "identity")
    pen.rect(0.02, belt - 0.03, 0.98, 0.9, c, r=0.25)
    pen.poly([(0.5 - rw, 0.12), (0.5 + rw, 0.12), (0.955, belt), (0.045, belt)], shade(c, 0.9))
    win = (0.17, belt - 0.045, rw - 0.06, 0.36) if rear else (0.15, belt - 0.025, rw - 0.035, 0.41)
    top, bot, tw, bw = win
    pen.poly([(0.5 - tw, top), (0.5 + tw, top), (0.5 + bw, bot), (0.5 - bw, bot)], GLASS)
    pen.mark("windglass", 0.5 - bw, top, 0.5 + bw, bot)
    pen.rect(0.03, 0.79, 0.97, 0.9, shade(c, 0.55), r=0.5)
    lc, v1, v2 = ((205, 30, 35), 0.5, 0.63) if rear else ((250, 245, 215), 0.52, 0.62)
    for u1, u2 in ((0.06, 0.27), (0.73, 0.94)):
        _light(pen, fam.light, (u1, v1, u2, v2), lc)
        pen.mark("carlight", u1, v1, u2, v2)
    if fam.lightcover and not rear:
        pen.rect(0.31, 0.53, 0.69, 0.67, (40, 42, 46), r=0.3)
        for k in range(3):
            pen.line([(0.33, 0.565 + 0.035 * k), (0.67, 0.565 + 0.035 * k)], (90, 92, 98), 0.008)
        pen.mark("lightcover", 0.31, 0.53, 0.69, 0.67)
    logo = (0.455, 0.54, 0.545, 0.54 + 0.09 / pen.a)
    draw_shape(pen, fam.logo, logo, CHROME, shade(c, 0.9))
    pen.mark("logo", *logo)
    _plate(pen, (0.37, 0.69, 0.63, 0.78), rng)
    if not rear:
        for u1 in (0.0, 0.93):
            pen.ellipse(u1, belt - 0.1, u1 + 0.07, belt - 0.02, shade(c, 0.8))
            pen.mark("backmirror", u1, belt - 0.1, u1 + 0.07, belt - 0.02)
    return win


def render_image(fam: Family, ident: Identity, cam: Camera, rng: np.random.Generator, size: int,
                 difficulty: float, style: RenderStyle = RenderStyle(),
                 score_rng: np.random.Generator | None = None,
                 realism_rng: np.random.Generator | None = None) -> tuple[Image.Image, list[PartBox]]:
    """Render one ``size`` x ``size`` image of ``ident`` seen by ``cam``; returns it and its visible boxes.

    The view (front, rear, side, mirrored side) and all jitter come from ``rng``; with ``difficulty`` 0
    the vehicle is centred on a plain background with no blur, noise, clutter or occlusion. With
    ``style.realism`` > 0 the realism nuisances are drawn from ``realism_rng`` alone, so ``rng``'s
    draws, the vehicle and its boxes are those of ``realism`` 0.
    """
    real = style.realism
    if real > 0 and realism_rng is None:
        raise ValueError("realism > 0 needs a realism_rng")
    d, k = difficulty, SUPERSAMPLE
    n = size * k
    view = VIEWS[int(rng.choice(3, p=np.asarray(cam.view_p)))]
    mirror = view == "side" and bool(rng.random() < cam.facing_right)
    canvas = background(rng, cam, d, n)
    body = BODIES[fam.body]
    scale = float(np.clip(0.82 + d * (cam.scale - 0.82 + rng.normal(0.0, 0.03)), 0.6, 0.95))
    aspect = body.side_aspect if view == "side" else body.front_aspect
    w = scale * n / max(1.0, aspect)
    cx, cy = n / 2 + n * d * (np.asarray(cam.shift) + rng.normal(0.0, 0.03, 2))
    pen = Pen(ImageDraw.Draw(canvas), cx - w / 2, cy - aspect * w / 2, w, aspect * w, mirror)
    if real > 0:
        draw_clutter(pen.draw, realism_rng, real, n)  # type: ignore[arg-type]
        road = np.asarray(canvas)
    kinds = {p.kind: p for p in ident.parts}
    if view == "side":
        geom = draw_side(pen, fam, kinds)
    else:
        geom = draw_front_rear(pen, fam, kinds, view == "rear", rng)
    if style.extra_shared_parts:
        draw_distractors(pen, fam, view, geom)
    draw_identity_parts(pen, ident, view, geom, rng, style.id_part_scale)
    if real > 0:
        drawn = np.asarray(canvas)
    occ = occluder(pen.draw, rng, cam, d, n, pen.px(0.0, 0.1, 1.0, 1.0))
    if real > 0:
        edge_occluder(pen.draw, realism_rng, real, n, pen.px(0.0, 0.0, 1.0, 1.0),  # type: ignore[arg-type]
                      [b for _, b, _ in pen.boxes])
        after = np.asarray(canvas)  # the vehicle's visible pixels: changed by it, untouched by occluders
        seen = (drawn != road).any(-1) & (after == drawn).all(-1)
        vehicle = seen.reshape(size, k, size, k).mean((1, 3)) if k > 1 else seen.astype(np.float32)
    img = canvas.reduce(k) if k > 1 else canvas
    blur = d * (cam.blur + abs(rng.normal(0.0, 0.25))) * size / 160
    if blur > 0.1:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    boxes = visible_boxes(pen.boxes, occ, k, size)
    if style.box_scores == "detector":
        if score_rng is None:
            raise ValueError("box_scores='detector' needs a score_rng")
        boxes = [replace(b, score=round(b.score * float(score_rng.uniform(0.5, 1.0)), 4)) for b in boxes]
    img = photometric(img, rng, cam, d)
    if real > 0:
        img = finish(img, realism_rng, real, vehicle, boxes)  # type: ignore[arg-type]
    return img, boxes


def _overlap(a: Rect, b: Rect) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def visible_boxes(boxes: list[tuple[str, Rect, str]], occ: Rect | None, k: int, size: int) -> list[PartBox]:
    """Scale canvas boxes to the image, clip them, score them by their visible fraction, drop hidden ones."""
    out = []
    for label, b, role in boxes:
        x1, y1, x2, y2 = (v / k for v in b)
        c = tuple(min(max(v, 0.0), float(size)) for v in (x1, y1, x2, y2))
        area = (x2 - x1) * (y2 - y1)
        hidden = _overlap(c, tuple(v / k for v in occ)) if occ else 0.0  # type: ignore[arg-type]
        frac = round(((c[2] - c[0]) * (c[3] - c[1]) - hidden) / area, 2) if area > 0 else 0.0
        if frac >= MIN_VISIBLE:
            out.append(PartBox(*(round(v, 2) for v in c), min(frac, 1.0), label, role))
    return out
