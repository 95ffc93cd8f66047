"""Top-D box selection (pure)."""

from __future__ import annotations

from pgan.parts.boxfile import PartBox

__all__ = ["select_top_d"]


def select_top_d(boxes: list[PartBox], d: int) -> list[PartBox]:
    """The ``d`` boxes with the highest score, best first.

    Labels play no part (as in the paper); ties keep the input order, so the
    selection is deterministic. Fewer than ``d`` boxes returns them all.
    """
    if d < 0:
        raise ValueError(f"d must be >= 0, got {d}")
    order = sorted(range(len(boxes)), key=lambda i: -boxes[i].score)
    return [boxes[i] for i in order[:d]]
