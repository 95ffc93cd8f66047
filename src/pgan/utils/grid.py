"""The grid variant's uniform cells (pure numpy): shared by the network, the grid part source and figures."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["grid_layout", "grid_masks"]


def grid_layout(d: int) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols = d`` and ``rows`` the largest divisor of ``d`` not above sqrt(d)."""
    rows = max(r for r in range(1, int(math.isqrt(d)) + 1) if d % r == 0)
    return rows, d // rows


def grid_masks(fh: int, fw: int, d: int) -> np.ndarray:
    """``d`` uniform grid cells over the map (the paper's grid-attention ablation).

    The grid has ``rows x cols = d`` cells with ``rows`` the largest divisor of
    ``d`` not above ``sqrt(d)`` (d=8 -> 2x4 cells); every feature cell belongs
    to exactly one part.
    """
    rows, cols = grid_layout(d)
    out = np.zeros((d, fh, fw), dtype=np.float32)
    rb = np.linspace(0, fh, rows + 1).round().astype(int)
    cb = np.linspace(0, fw, cols + 1).round().astype(int)
    for i in range(rows):
        for j in range(cols):
            out[i * cols + j, rb[i]:rb[i + 1], cb[j]:cb[j + 1]] = 1.0
    return out
