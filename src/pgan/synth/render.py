"""Draw one synthetic vehicle image with PIL (the drawing half of :mod:`pgan.synth`).

A ``Family`` fixes the look (body type, colour, logo, lights); an ``Identity`` adds a few small parts
(windshield signs, ornaments, roof carrier, rims, ...), the only cue separating it from its near-twins;
a ``Camera`` fixes the nuisance (scale, shift, light, blur, noise, clutter, occlusion); all three are
sampled in :mod:`pgan.synth.world`. The scene around the vehicle (background, occluders,
photometric changes) and the palette are in :mod:`pgan.synth.scene`.
Shapes are drawn in vehicle coordinates ``(u, v)`` in [0, 1]^2 (u = 0 is the left edge of the vehicle's
box in the picture, v = 0 its top) and mapped to pixels by :class:`_Pen`, so every box follows the
vehicle's scale, shift and mirroring exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from pgan.parts.boxfile import PartBox
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

VIEWS = ("front", "rear", "side")
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
    """

    extra_shared_parts: bool = False
    id_part_scale: float = 1.0
    box_scores: str = "visibility"

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
# Identity part sizes: (min, max) width in vehicle widths, and height / width in pixels.
SIZES = {"anusigns": (0.06, 0.075, 1.0), "hungs": (0.09, 0.12, 1.0), "tissuebox": (0.17, 0.23, 0.5),
         "layon": (0.15, 0.22, 0.42), "entrylicense": (0.1, 0.13, 1.0), "newersign": (0.12, 0.16, 0.9),
         "carrier": (0.42, 0.62, 0.16), "safebelt": (0.18, 0.18, 1.0)}
SLOT_U = {"BL": -0.22, "BC": 0.0, "BR": 0.22}


def part_views(p: IdPart) -> tuple[str, ...]:
    """The views in which an identity part can be seen."""
    return {"anusigns": ("front",), "hungs": ("front", "side"), "carrier": VIEWS, "wheel": VIEWS,
            "newersign": ("rear",), "safebelt": ("front", "side")}.get(p.kind, (p.where,))


class _Pen:
    """Draws in vehicle coordinates and records part boxes in canvas pixels."""

    def __init__(self, draw: ImageDraw.ImageDraw, x0: float, y0: float, w: float, h: float, mirror: bool):
        self.draw, self.x0, self.y0, self.w, self.h, self.mirror = draw, x0, y0, w, h, mirror
        self.a = h / w  # a size s in vehicle widths is s / a in v units
        self.boxes: list[tuple[str, Rect, str]] = []

    def xy(self, u: float, v: float) -> tuple[float, float]:
        return self.x0 + (1.0 - u if self.mirror else u) * self.w, self.y0 + v * self.h

    def px(self, u1: float, v1: float, u2: float, v2: float) -> Rect:
        (xa, ya), (xb, yb) = self.xy(u1, v1), self.xy(u2, v2)
        return min(xa, xb), min(ya, yb), max(xa, xb), max(ya, yb)

    def rect(self, u1: float, v1: float, u2: float, v2: float, fill: Colour, r: float = 0.0) -> None:
        b = self.px(u1, v1, u2, v2)
        rad = r * min(b[2] - b[0], b[3] - b[1]) / 2
        if rad >= 1:
            self.draw.rounded_rectangle(b, radius=rad, fill=fill)
        else:
            self.draw.rectangle(b, fill=fill)

    def ellipse(self, u1: float, v1: float, u2: float, v2: float, fill: Colour) -> None:
        self.draw.ellipse(self.px(u1, v1, u2, v2), fill=fill)

    def poly(self, pts: list[tuple[float, float]], fill: Colour) -> None:
        self.draw.polygon([self.xy(u, v) for u, v in pts], fill=fill)

    def line(self, pts: list[tuple[float, float]], fill: Colour, width: float) -> None:
        self.draw.line([self.xy(u, v) for u, v in pts], fill=fill, width=max(1, round(width * self.w)))

    def mark(self, label: str, u1: float, v1: float, u2: float, v2: float, role: str = "shared") -> None:
        """Record a ground-truth box; ``role`` is "identity" for a part of this vehicle's own, "shared"
        for one every vehicle of its family has (the one source of truth for part roles)."""
        self.boxes.append((label, self.px(u1, v1, u2, v2), role))


def _shape(pen: _Pen, name: str, b: Rect, fill: Colour, fill2: Colour) -> None:
    """A small filled shape (logos, ornaments, sign marks) inside box ``b``."""
    u1, v1, u2, v2 = b
    uc, vc, du, dv = (u1 + u2) / 2, (v1 + v2) / 2, u2 - u1, v2 - v1
    if name == "diamond":
        pen.poly([(uc, v1), (u2, vc), (uc, v2), (u1, vc)], fill)
    elif name == "triangle":
        pen.poly([(u1, v1), (u2, v1), (uc, v2)], fill)
    elif name == "bars":
        for k in range(3):
            pen.rect(u1, v1 + k * dv / 3, u2, v1 + (k + 0.6) * dv / 3, fill)
    elif name == "star":
        pen.poly([(uc, v1), (u2, v2), (u1, vc), (u2, vc), (u1, v2)], fill)
    elif name == "circle":
        pen.ellipse(*b, fill)
    elif name == "ring":
        pen.ellipse(*b, fill)
        pen.ellipse(u1 + du * 0.3, v1 + dv * 0.3, u2 - du * 0.3, v2 - dv * 0.3, fill2)
    else:
        pen.rect(*b, fill, r=0.4)
        pen.rect(u1 + du * 0.25, v1 + dv * 0.25, u2 - du * 0.25, v2 - dv * 0.25, fill2)


def _light(pen: _Pen, shape: str, b: Rect, col: Colour) -> None:
    u1, v1, u2, v2 = b
    if shape == "ellipse":
        pen.ellipse(*b, col)
    elif shape == "slant":
        inner, outer = (u1, u2) if u1 > 0.5 else (u2, u1)
        pen.poly([(inner, (v1 + v2) / 2), (outer, v1), (outer, v2), (inner, v2)], col)
    else:
        pen.rect(*b, col, r=0.3)


def _plate(pen: _Pen, b: Rect, rng: np.random.Generator) -> None:
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


def _wheel_side(pen: _Pen, uc: float, fam: Family, wheel: IdPart | None) -> None:
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


def draw_side(pen: _Pen, fam: Family, kinds: dict[str, IdPart]) -> Rect:
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


def draw_front_rear(pen: _Pen, fam: Family, kinds: dict[str, IdPart], rear: bool,
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
    _shape(pen, fam.logo, logo, CHROME, shade(c, 0.9))
    pen.mark("logo", *logo)
    _plate(pen, (0.37, 0.69, 0.63, 0.78), rng)
    if not rear:
        for u1 in (0.0, 0.93):
            pen.ellipse(u1, belt - 0.1, u1 + 0.07, belt - 0.02, shade(c, 0.8))
            pen.mark("backmirror", u1, belt - 0.1, u1 + 0.07, belt - 0.02)
    return win


def _place(pen: _Pen, p: IdPart, view: str, geom: Rect, ju: float, jv: float) -> Rect:
    """The box of identity part ``p`` in this view (identity offset + per-image jitter ``ju, jv``)."""
    lo, hi, ratio = SIZES[p.kind]
    s, a = lo + p.size * (hi - lo), pen.a
    if view == "side":
        roof, um, r1, r2 = geom
        if p.kind == "carrier":
            half, uc, hh = 0.12 + 0.1 * p.size, (r1 + r2) / 2 + 0.04 * p.off + ju, 0.1 + 0.05 * p.size
            return uc - half, roof - hh, uc + half, roof - 0.004
        if p.kind == "safebelt":
            return um - 0.09 + ju, roof + 0.05, um - 0.01 + ju, 0.48
        oh = 0.17 + 0.04 * p.size  # hungs, seen through the front side window
        uc = r1 + 0.03 + oh * a / 2 + ju
        return uc - oh * a / 2, roof + 0.035, uc + oh * a / 2, roof + 0.085 + oh + jv
    top, bot, tw, bw = geom
    if p.kind == "carrier":
        h = (0.06 + 0.03 * p.size) / a
        return 0.5 - s / 2 + 0.03 * p.off + ju, 0.115 - h, 0.5 + s / 2 + 0.03 * p.off + ju, 0.115
    if p.kind == "safebelt":
        sg = -1 if p.shape == 0 else 1
        u1, u2 = sorted((0.5 + sg * 0.1, 0.5 + sg * 0.28))
        return u1 + ju, top + 0.03, u2 + ju, bot - 0.03
    n = p.count if p.kind == "anusigns" else 1
    w, h = (s, n * s / a) if p.kind == "anusigns" and p.shape == 1 else (n * s, s * ratio / a)
    if p.kind == "hungs":
        h += 0.05
        v1, uc = top, 0.5 + 0.06 * p.off + ju
    elif p.slot in ("TL", "TR"):
        v1 = top + 0.015 + abs(jv)
        inner = tw + (bw - tw) * (v1 - top) / (bot - top) - 0.02 - 0.03 * abs(p.off) - abs(ju)
        uc = 0.5 - inner + w / 2 if p.slot == "TL" else 0.5 + inner - w / 2
    else:
        v1, uc = bot - 0.008 - h + jv * 0.3, 0.5 + SLOT_U[p.slot] + 0.03 * p.off + ju
    return uc - w / 2, v1, uc + w / 2, v1 + h


def _draw_part(pen: _Pen, p: IdPart, b: Rect, side: bool) -> None:
    u1, v1, u2, v2 = b
    c, c2, du, dv = p.colour, p.colour2, u2 - u1, v2 - v1
    uc = (u1 + u2) / 2
    if p.kind == "anusigns":
        for i in range(p.count):
            f0, f1 = i / p.count, (i + 0.85) / p.count
            col = c if i % 2 == 0 else c2
            if p.shape == 1:  # a column
                pen.rect(u1, v1 + f0 * dv, u2, v1 + f1 * dv, col)
            else:
                pen.rect(u1 + f0 * du, v1, u1 + f1 * du, v2, col)
    elif p.kind == "hungs":
        vs = v1 + 0.05
        pen.line([(uc, v1), (uc, vs)], (200, 200, 200), 0.006)
        _shape(pen, ("circle", "diamond", "triangle", "square")[p.shape], (u1, vs, u2, v2), c, c2)
    elif p.kind == "tissuebox":
        pen.poly([(uc - du * 0.22, v1 + dv * 0.4), (uc, v1), (uc + du * 0.22, v1 + dv * 0.4)], WHITE)
        pen.rect(u1, v1 + dv * 0.35, u2, v2, c, r=0.2)
        pen.rect(u1, v2 - dv * 0.3, u2, v2 - dv * 0.15, c2)
    elif p.kind == "layon":
        if p.shape == 0:
            pen.ellipse(*b, c)
        elif p.shape == 1:
            pen.rect(*b, c, r=0.3)
            pen.rect(u1, v1 + dv * 0.4, u2, v1 + dv * 0.6, c2)
        else:
            pen.ellipse(u1, v1, uc, v2, c)
            pen.ellipse(uc - du * 0.1, v1 + dv * 0.2, u2, v2, c2)
    elif p.kind in ("entrylicense", "newersign"):
        _shape(pen, ("square", "circle", "ring")[p.shape], b, c, c2)
    elif p.kind == "safebelt":
        pts = [(u2, v1), (u1, v2)] if side or p.shape == 0 else [(u1, v1), (u2, v2)]
        pen.line(pts, c, 0.022 if not side else 0.012)
    elif p.kind == "carrier":
        if p.shape == 0:  # roof box
            pen.rect(*b, c, r=0.7)
            pen.line([(u1 + du * 0.1, v1 + dv * 0.3), (u2 - du * 0.1, v1 + dv * 0.3)], c2, 0.008)
        else:  # rack rails with a bag (1) or upright skis/boards (2)
            pen.rect(u1, v2 - dv * 0.25, u2, v2, (45, 45, 48))
            for i in range(1 if p.shape == 1 else 4):
                f = 0.1 if p.shape == 1 else 0.12 + 0.2 * i
                g = 0.9 if p.shape == 1 else f + 0.12
                pen.rect(u1 + du * f, v1, u1 + du * g, v2 - dv * 0.2, c if i % 2 == 0 else c2, r=0.4)


def _shrink(b: Rect, scale: float, keep_bottom: bool) -> Rect:
    u1, v1, u2, v2 = b
    uc, vc, hu, hv = (u1 + u2) / 2, (v1 + v2) / 2, (u2 - u1) * scale / 2, (v2 - v1) * scale / 2
    return (uc - hu, v2 - 2 * hv, uc + hu, v2) if keep_bottom else (uc - hu, vc - hv, uc + hu, vc + hv)


def draw_identity_parts(pen: _Pen, ident: Identity, view: str, geom: Rect, rng: np.random.Generator,
                        scale: float = 1.0) -> None:
    """Draw and mark the identity's parts visible in ``view`` (wheels are drawn with the body)."""
    for p in ident.parts:
        ju, jv = rng.normal(0.0, 0.007, 2)
        if view in part_views(p) and p.kind != "wheel":
            b = _place(pen, p, view, geom, float(ju), float(jv))
            if scale != 1.0:
                b = _shrink(b, scale, keep_bottom=p.kind == "carrier")
            _draw_part(pen, p, b, view == "side")
            pen.mark(p.kind, *b, role="identity")


def draw_distractors(pen: _Pen, fam: Family, view: str, geom: Rect) -> None:
    """Family-level small parts (the harder setting): the same on every vehicle of the family, so
    they carry no identity, but they are as small as identity parts and compete for the top-D."""
    c = fam.colour
    amber, chrome, dark = (250, 170, 40), (200, 202, 206), shade(c, 0.55)
    if view == "side":
        roof, um, r1, r2 = geom
        for u in (um - 0.13, um + 0.12):
            pen.rect(u, 0.56, u + 0.06, 0.58, dark, r=0.5)
            pen.mark("doorhandle", u, 0.56, u + 0.06, 0.58)
        pen.rect(0.09, 0.63, 0.13, 0.655, amber, r=0.5)
        pen.mark("marker", 0.09, 0.63, 0.13, 0.655)
        pen.ellipse(0.8, 0.55, 0.84, 0.6, shade(c, 0.8))
        pen.mark("fuelcap", 0.8, 0.55, 0.84, 0.6)
        au = r2 - 0.05
        pen.line([(au, roof), (au + 0.04, roof - 0.09)], (30, 30, 30), 0.006)
        pen.mark("antenna", au, roof - 0.09, au + 0.04, roof)
        return
    top, bot, tw, bw = geom
    if view == "front":
        for u1 in (0.09, 0.81):
            if fam.light == "rect":
                pen.rect(u1, 0.7, u1 + 0.1, 0.755, (240, 240, 215), r=0.4)
            else:
                pen.ellipse(u1, 0.7, u1 + 0.1, 0.755, (240, 240, 215))
            pen.mark("foglight", u1, 0.7, u1 + 0.1, 0.755)
        for u1 in (0.1, 0.72):
            pen.rect(u1, 0.81, u1 + 0.18, 0.87, (25, 25, 28), r=0.3)
            pen.mark("vent", u1, 0.81, u1 + 0.18, 0.87)
        for u0 in (0.5 - bw + 0.06, 0.52):
            pen.line([(u0, bot - 0.012), (u0 + 0.17, bot - 0.04)], (20, 20, 20), 0.007)
            pen.mark("wiper", u0, bot - 0.04, u0 + 0.17, bot - 0.005)
        return
    for u1 in (0.07, 0.85):
        pen.rect(u1, 0.72, u1 + 0.08, 0.76, (190, 20, 30), r=0.3)
        pen.mark("reflector", u1, 0.72, u1 + 0.08, 0.76)
    pen.ellipse(0.7, 0.9, 0.8, 0.95, chrome)
    pen.mark("exhaust", 0.7, 0.9, 0.8, 0.95)
    pen.line([(0.5, bot - 0.01), (0.5 + 0.15, bot - 0.06)], (20, 20, 20), 0.007)
    pen.mark("wiper", 0.5, bot - 0.06, 0.65, bot - 0.005)
    pen.rect(0.42, top - 0.035, 0.58, top - 0.005, (220, 30, 35), r=0.5)
    pen.mark("brakelight", 0.42, top - 0.035, 0.58, top - 0.005)


def render_image(fam: Family, ident: Identity, cam: Camera, rng: np.random.Generator, size: int,
                 difficulty: float, style: RenderStyle = RenderStyle(),
                 score_rng: np.random.Generator | None = None) -> tuple[Image.Image, list[PartBox]]:
    """Render one ``size`` x ``size`` image of ``ident`` seen by ``cam``; returns it and its visible boxes.

    The view (front, rear, side, mirrored side) and all jitter come from ``rng``; with ``difficulty`` 0
    the vehicle is centred on a plain background with no blur, noise, clutter or occlusion.
    """
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
    pen = _Pen(ImageDraw.Draw(canvas), cx - w / 2, cy - aspect * w / 2, w, aspect * w, mirror)
    kinds = {p.kind: p for p in ident.parts}
    if view == "side":
        geom = draw_side(pen, fam, kinds)
    else:
        geom = draw_front_rear(pen, fam, kinds, view == "rear", rng)
    if style.extra_shared_parts:
        draw_distractors(pen, fam, view, geom)
    draw_identity_parts(pen, ident, view, geom, rng, style.id_part_scale)
    occ = occluder(pen.draw, rng, cam, d, n, pen.px(0.0, 0.1, 1.0, 1.0))
    img = canvas.reduce(k) if k > 1 else canvas
    blur = d * (cam.blur + abs(rng.normal(0.0, 0.25))) * size / 160
    if blur > 0.1:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    boxes = visible_boxes(pen.boxes, occ, k, size)
    if style.box_scores == "detector":
        if score_rng is None:
            raise ValueError("box_scores='detector' needs a score_rng")
        boxes = [replace(b, score=round(b.score * float(score_rng.uniform(0.5, 1.0)), 4)) for b in boxes]
    return photometric(img, rng, cam, d), boxes


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
