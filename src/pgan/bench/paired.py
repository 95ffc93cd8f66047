"""Paired comparisons over seeds: the mean difference, its 95% t-interval, and how many seeds a target
interval needs.

Two variants run with the same seed share the data order and, where shapes allow, the initialisation, so
their per-seed difference removes most of the seed-to-seed spread; the interval is Student's t over those
differences (``mean ± t_{0.975}(n-1) · sd / sqrt(n)``, sd with ``n - 1``).

    d = paired_difference({("pgan", 0): 0.61, ("nopam", 0): 0.60, ...}, "pgan", "nopam")
    d["diff_mean"], d["diff_ci95"]
    seeds_for_half_width(sd=0.035, half_width=0.01)   # seeds a pilot's spread needs for ±1 mAP
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["paired_difference", "paired_table", "seeds_for_half_width", "t975", "t_interval"]

# t_{0.975}(df) for df = 1..30 (standard tables).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
         2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
         2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
_Z975 = 1.959964


def t975(df: int) -> float:
    """The two-sided 95% quantile of Student's t with ``df`` degrees of freedom: a table up to 30, beyond it
    the Cornish-Fisher expansion around the normal quantile (error below 1e-3 for df > 30)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df ** 2)


def t_interval(diffs: Sequence[float]) -> tuple[float, float]:
    """The 95% t-interval of the mean of paired differences (nan with fewer than 2)."""
    n = len(diffs)
    if n < 2:
        return (math.nan, math.nan)
    mean, sd = float(np.mean(diffs)), float(np.std(diffs, ddof=1))
    half = t975(n - 1) * sd / math.sqrt(n)
    return (mean - half, mean + half)


def paired_difference(values: Mapping[tuple[str, int], float], a: str, b: str,
                      seeds: Sequence[int] | None = None) -> dict | None:
    """``a - b`` over the seeds both have (``values[(variant, seed)]``): ``{"seeds", "diffs", "diff_mean",
    "diff_sd", "diff_ci95"}``, or None when no seed has both."""
    if seeds is None:
        seeds = sorted({s for (v, s) in values if v == a})
    common = [s for s in seeds if (a, s) in values and (b, s) in values]
    if not common:
        return None
    diffs = [float(values[(a, s)] - values[(b, s)]) for s in common]
    return {"seeds": common, "diffs": diffs, "diff_mean": float(np.mean(diffs)),
            "diff_sd": float(np.std(diffs, ddof=1)) if len(diffs) > 1 else math.nan,
            "diff_ci95": list(t_interval(diffs))}


def seeds_for_half_width(sd: float, half_width: float, max_seeds: int = 1000) -> int:
    """The fewest seeds whose 95% t-interval half-width ``t975(n-1) · sd / sqrt(n)`` is at most
    ``half_width``, for paired differences with standard deviation ``sd`` (e.g. a pilot's); ``max_seeds``
    + 1 when even that many are not enough."""
    if sd < 0 or half_width <= 0:
        raise ValueError("sd must be >= 0 and half_width > 0")
    for n in range(2, max_seeds + 1):
        if t975(n - 1) * sd / math.sqrt(n) <= half_width:
            return n
    return max_seeds + 1


def paired_table(pairs: Mapping[str, dict]) -> list[str]:
    """Markdown rows of ``{name: paired_difference(...)}`` in mAP points: mean, 95% interval, per seed."""
    lines = ["| paired difference (mAP points) | mean | 95% interval | per seed | seeds |",
             "|---|---|---|---|---|"]
    for name, p in pairs.items():
        lo, hi = p["diff_ci95"]
        ci = "–" if lo is None or math.isnan(lo) else f"[{100 * lo:+.1f}, {100 * hi:+.1f}]"
        per = ", ".join(f"{100 * d:+.1f}" for d in p["diffs"])
        lines.append(f"| {name} | {100 * p['diff_mean']:+.1f} | {ci} | {per} | {len(p['seeds'])} |")
    return lines
