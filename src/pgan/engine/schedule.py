"""Learning-rate schedule (pure): linear warm-up, then x gamma at each milestone.

Evaluated per iteration at a fractional epoch, so short runs get a smooth
warm-up; with whole epochs it equals the authors' per-epoch schedule.
"""

from __future__ import annotations

import bisect


def lr_factor(epoch: float, warmup_epochs: float = 10.0, warmup_factor: float = 0.01,
              milestones: tuple[float, ...] = (30, 50, 70, 90, 110, 130), gamma: float = 0.5) -> float:
    """Multiplier of the base learning rate at (fractional) ``epoch``.

    >>> lr_factor(0.0), lr_factor(10.0), lr_factor(30.0)
    (0.01, 1.0, 0.5)
    """
    decay = gamma ** bisect.bisect_right(sorted(milestones), epoch)
    if warmup_epochs > 0 and epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        return (warmup_factor * (1 - alpha) + alpha) * decay
    return decay
