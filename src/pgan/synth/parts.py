"""Identity parts (what tells a vehicle from its near-twins) and the harder setting's family-level
distractors: where each goes in a view, and how it is drawn."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pgan.synth.pen import Pen, Rect, draw_shape
from pgan.synth.scene import WHITE, shade

if TYPE_CHECKING:  # the world's dataclasses live with their samplers
    from pgan.synth.world import Family, Identity, IdPart

VIEWS = ("front", "rear", "side")
# Identity part sizes: (min, max) width in vehicle widths, and height / width in pixels.
SIZES = {"anusigns": (0.06, 0.075, 1.0), "hungs": (0.09, 0.12, 1.0), "tissuebox": (0.17, 0.23, 0.5),
         "layon": (0.15, 0.22, 0.42), "entrylicense": (0.1, 0.13, 1.0), "newersign": (0.12, 0.16, 0.9),
         "carrier": (0.42, 0.62, 0.16), "safebelt": (0.18, 0.18, 1.0)}
SLOT_U = {"BL": -0.22, "BC": 0.0, "BR": 0.22}


def part_views(p: IdPart) -> tuple[str, ...]:
    """The views in which an identity part can be seen."""
    return {"anusigns": ("front",), "hungs": ("front", "side"), "carrier": VIEWS, "wheel": VIEWS,
            "newersign": ("rear",), "safebelt": ("front", "side")}.get(p.kind, (p.where,))


def _place(pen: Pen, p: IdPart, view: str, geom: Rect, ju: float, jv: float) -> Rect:
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


def _draw_part(pen: Pen, p: IdPart, b: Rect, side: bool) -> None:
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
        draw_shape(pen, ("circle", "diamond", "triangle", "square")[p.shape], (u1, vs, u2, v2), c, c2)
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
        draw_shape(pen, ("square", "circle", "ring")[p.shape], b, c, c2)
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


def draw_identity_parts(pen: Pen, ident: Identity, view: str, geom: Rect, rng: np.random.Generator,
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


def draw_distractors(pen: Pen, fam: Family, view: str, geom: Rect) -> None:
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
