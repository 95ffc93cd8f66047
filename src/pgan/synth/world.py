"""The synthetic benchmark's world: model+colour families, cameras and identities, sampled from a seed.

Everything here is a pure function of ``(seed, id)``, so an identity looks the
same whichever worker renders it. :mod:`pgan.synth.render` draws them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from pgan.synth.parts import VIEWS, part_views
from pgan.synth.render import BODIES
from pgan.synth.scene import CAR_COLOURS, Colour

if TYPE_CHECKING:
    from pgan.synth.generate import SynthConfig

# kind: (selection weight, number of shapes, slots in its window); '' = no window slot.
KINDS: dict[str, tuple[float, int, tuple[str, ...]]] = {
    "anusigns": (1.0, 2, ("TL", "TR")), "hungs": (1.0, 4, ("TC",)), "tissuebox": (1.0, 1, ("BL", "BC", "BR")),
    "carrier": (0.6, 3, ("",)), "newersign": (1.0, 3, ("TL", "TR", "BL", "BR")),
    "entrylicense": (1.0, 3, ("TL", "TR", "BL", "BR")), "layon": (1.0, 3, ("BL", "BC", "BR")),
    "safebelt": (0.8, 2, ("",)), "wheel": (1.2, 1, ("",)),
}
PART_COLOURS = ((222, 40, 40), (245, 140, 20), (250, 220, 40), (40, 170, 70), (40, 190, 210), (40, 80, 220),
                (140, 60, 190), (240, 120, 170), (245, 245, 245), (20, 20, 20), (170, 230, 60), (130, 80, 40))
CARRIER_COLOURS = ((25, 25, 25), (70, 72, 76), (170, 172, 176), (235, 235, 235), (30, 40, 90), (110, 70, 40),
                   (140, 30, 30))
RIM_COLOURS = ((205, 205, 210), (35, 35, 35), (200, 165, 60), (240, 240, 240), (200, 40, 40), (150, 100, 50))
LOGOS = ("circle", "diamond", "triangle", "ring", "bars", "star")
LIGHTS = ("rect", "ellipse", "slant")


@dataclass(frozen=True)
class Family:
    """A model + colour shared by many identities (the near-twins)."""

    body: str
    colour: Colour
    logo: str
    light: str
    lightcover: bool
    sunroof: bool
    rim: Colour


@dataclass(frozen=True)
class IdPart:
    """One identity part; ``where`` is 'front'/'rear' for parts in that window, ``slot`` its place there."""

    kind: str
    where: str
    slot: str
    colour: Colour
    colour2: Colour
    shape: int
    count: int
    size: float  # 0..1 within the kind's size range
    off: float  # -1..1, identity-level position offset


@dataclass(frozen=True)
class Identity:
    """A vehicle: its family (index) and the parts that tell it from its near-twins."""

    vid: int
    family: int
    parts: tuple[IdPart, ...]


@dataclass(frozen=True)
class Camera:
    """The fixed nuisance of one camera (all scaled by the difficulty when rendering)."""

    scale: float
    shift: tuple[float, float]
    bright: float
    contrast: float
    cast: tuple[float, float, float]
    blur: float
    noise: float
    bg: Colour
    occlusion: float
    view_p: tuple[float, float, float]
    facing_right: float


def seeded_rng(seed: int, a: int, tag: int) -> np.random.Generator:
    """The generator stream ``tag`` (1 families, 2 cameras, 3 identities, 4 shots, 5 split) of ``a``."""
    # A nonzero last word keeps these streams apart from the per-image [seed, vid, index] streams.
    return np.random.default_rng([seed, a, 0, tag])


def make_families(cfg: SynthConfig) -> list[Family]:
    """``num_families`` distinct (body, colour) looks with their own logo, lights and rims.

    Body types and colours are each used in turn (shuffled), so small family counts are as varied as
    possible; pairs stay distinct up to ``len(BODIES) * len(CAR_COLOURS)`` families.
    """
    r = seeded_rng(cfg.seed, 0, 1)
    bodies, colours = r.permutation(list(BODIES)), r.permutation(len(CAR_COLOURS))
    out = []
    for f in range(cfg.num_families):
        body, colour = str(bodies[f % len(bodies)]), CAR_COLOURS[int(colours[f % len(colours)])]
        logo, light = LOGOS[int(r.integers(len(LOGOS)))], LIGHTS[int(r.integers(len(LIGHTS)))]
        out.append(Family(body, colour, logo, light, bool(r.random() < 0.5), bool(r.random() < 0.4),
                          RIM_COLOURS[int(r.integers(2))]))
    return out


def make_camera(seed: int, cam: int) -> Camera:
    """Camera ``cam``'s fixed nuisance and its preferred view."""
    r = seeded_rng(seed, cam, 2)
    view_p = np.full(3, 0.2)
    view_p[int(r.integers(3))] = 0.6
    grey = r.uniform(70, 170)
    return Camera(
        scale=float(r.uniform(0.6, 0.95)), shift=tuple(float(x) for x in r.uniform(-0.08, 0.08, 2)),
        bright=float(r.uniform(-0.4, 0.25)), contrast=float(r.uniform(-0.35, 0.15)),
        cast=tuple(float(x) for x in r.uniform(-0.12, 0.12, 3)), blur=float(r.uniform(0.0, 1.2)),
        noise=float(r.uniform(2.0, 10.0)),
        bg=tuple(int(x) for x in np.clip(grey + r.normal(0, 18, 3), 0, 255)),
        occlusion=float(r.uniform(0.15, 0.5)), view_p=tuple(float(x) for x in view_p),
        facing_right=float(r.choice([0.15, 0.85])))  # type: ignore[arg-type]


def make_identity(seed: int, vid: int, family: int) -> Identity:
    """3-5 identity parts; every view shows 2-4 of them and a carrier or rim style is seen in all views."""
    r = seeded_rng(seed, vid, 3)
    names = list(KINDS)
    weights = np.asarray([KINDS[k][0] for k in names])
    for _ in range(10_000):
        chosen = [names[int(i)] for i in r.choice(len(names), int(r.integers(3, 6)), replace=False,
                                                   p=weights / weights.sum())]
        used: set[tuple[str, str]] = set()
        parts = []
        for kind in chosen:
            where = str(r.choice(["front", "rear"])) if kind in ("tissuebox", "layon", "entrylicense") else (
                "rear" if kind == "newersign" else "front")
            free = [s for s in KINDS[kind][2] if not s or (where, s) not in used]
            if not free:
                break
            slot = str(free[int(r.integers(len(free)))])
            used.add((where, slot))
            pal = CARRIER_COLOURS if kind == "carrier" else RIM_COLOURS if kind == "wheel" else PART_COLOURS
            c1, c2 = (pal[int(i)] for i in r.choice(len(pal), 2, replace=False))
            shape = int(r.integers(KINDS[kind][1]))
            count = int(r.integers(3, 7)) if kind == "wheel" else (2 if shape == 1 else int(r.integers(2, 4)))
            size, off = float(r.random()), float(r.uniform(-1, 1))
            parts.append(IdPart(kind, where, slot, c1, c2, shape, count, size, off))
        else:
            per_view = [sum(v in part_views(p) for p in parts) for v in VIEWS]
            if {"carrier", "wheel"} & set(chosen) and min(per_view) >= 2 and max(per_view) <= 4:
                return Identity(vid, family, tuple(parts))
    raise RuntimeError(f"could not sample identity parts for vid {vid}")  # not reached in practice
