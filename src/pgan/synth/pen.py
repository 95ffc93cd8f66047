"""Drawing in vehicle coordinates: the :class:`Pen` every synthetic part and body is drawn with.

Shapes are drawn in vehicle coordinates ``(u, v)`` in [0, 1]^2 (u = 0 is the left edge of the
vehicle's box in the picture, v = 0 its top) and mapped to pixels by the pen, so every box follows
the vehicle's scale, shift and mirroring exactly. The pen also records the ground-truth boxes, each
with its role: the one source of truth for which parts are identity parts.
"""

from __future__ import annotations

from PIL import ImageDraw

from pgan.synth.scene import Colour, Rect

__all__ = ["Pen", "draw_shape"]


class Pen:
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


def draw_shape(pen: Pen, name: str, b: Rect, fill: Colour, fill2: Colour) -> None:
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
