"""What the Part Attention Module attends to, by part role (pure; ``pgan analyze attention``).

For every image, each selected part's *relative weight* is its PAM weight times the
number of valid parts of the image (1.0 = the uniform share). The headline figure is

    ratio = mean relative weight of identity parts / mean relative weight of shared parts

so 1.0 means the PAM treats both kinds alike (as PGAN w/o PAM does), above 1 it favours
the parts that tell near-twins apart. Images need no particular number of parts.

Wheels need their own rows (issue 18): in the synthetic benchmark's front and rear views the
generator marks a wheel only when it carries the identity's own rim, so there "wheel" means
"identity", and a PAM that likes wheels as such scores a high ratio. :func:`separate_wheels` gives
wheel parts their own roles (``identity_rim``, ``plain_wheel``), so the ratio of
:func:`role_attention` on those roles is the ratio without wheels, and the wheels are rows beside it;
:func:`attention_figures` reports both ratios and every row's relative weight.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["AttentionSpread", "ROLES", "RoleAttention", "WHEEL_ROLES", "attention_figures", "attention_spread",
           "role_attention", "separate_wheels"]

ROLES = ("identity", "shared", "clutter")
WHEEL_ROLES = {"identity": "identity_rim", "shared": "plain_wheel"}  # a wheel's role -> its own row


@dataclass
class RoleAttention:
    ratio: float  # identity vs shared, 1.0 = uniform; nan when either kind is absent
    relative: dict[str, float]  # mean relative weight per role (1.0 = uniform share)
    share: dict[str, float]  # fraction of all attention mass per role
    count: dict[str, int]  # selected parts per role
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


def role_attention(weights: Sequence[np.ndarray], roles: Sequence[Sequence[str | None]],
                   valid: Sequence[np.ndarray] | None = None) -> RoleAttention:
    """``weights[i]`` are image i's PAM weights (slot order), ``roles[i]`` the roles of its selected
    parts in the same order (shorter than ``weights[i]`` when the image has fewer than D parts).
    Parts of unknown role (``None``) count towards the number of valid parts but no role.

    ``valid[i]`` (bool, slot order) says which parts have a non-empty mask: a part counts by its
    mask, so one whose weight underflowed to 0 still counts (with relative weight 0). Without it,
    validity falls back to ``weight > 0``, which is safe for pgan's own weights (the PAM's softmax
    never gives a valid part exactly 0, see :func:`pgan.models.part_attention.masked_softmax`) but
    not for weights from elsewhere.

    Roles beyond :data:`ROLES` (e.g. :data:`WHEEL_ROLES`) get their own entries in ``relative``,
    ``share`` and ``count``; ``ratio`` is always identity vs shared."""
    extra = sorted({r for rs in roles for r in rs if r is not None and r not in ROLES})
    rel: dict[str, list[float]] = {r: [] for r in (*ROLES, *extra)}
    mass: dict[str, float] = {r: 0.0 for r in rel}
    total, images = 0.0, 0
    for i, (w, rs) in enumerate(zip(weights, roles)):
        w = np.asarray(w, dtype=np.float64)[:len(rs)]
        ok_parts = w > 0 if valid is None else np.asarray(valid[i], dtype=bool)[:len(rs)]
        n = int(ok_parts.sum())
        if n == 0:
            continue
        images += 1
        total += float(w.sum())
        for wi, r, ok in zip(w, rs, ok_parts):
            if ok and r in rel:
                rel[r].append(float(wi) * n)
                mass[r] += float(wi)
    mean = {r: float(np.mean(v)) if v else math.nan for r, v in rel.items()}
    ratio = mean["identity"] / mean["shared"] if rel["identity"] and rel["shared"] and mean["shared"] > 0 \
        else math.nan
    share = {r: mass[r] / total if total > 0 else math.nan for r in rel}
    return RoleAttention(ratio, mean, share, {r: len(v) for r, v in rel.items()}, images)


def separate_wheels(roles: Sequence[Sequence[str | None]], labels: Sequence[Sequence[str | None]],
                    wheel: str = "wheel") -> list[list[str | None]]:
    """``roles`` with every part whose ground-truth class (``labels``, same layout, as
    :func:`pgan.parts.roles.selection_roles` gives them) is ``wheel`` moved to its own role:
    ``identity_rim`` (the identity's own rim) or ``plain_wheel`` (the family's); other parts keep theirs."""
    return [[WHEEL_ROLES.get(r, r) if lab == wheel and r is not None else r for r, lab in zip(rs, labs)]
            for rs, labs in zip(roles, labels)]


def attention_figures(weights: Sequence[np.ndarray], roles: Sequence[Sequence[str | None]],
                      labels: Sequence[Sequence[str | None]] | None = None,
                      valid: Sequence[np.ndarray] | None = None) -> dict[str, float]:
    """The attention figures an evaluation reports (``valid``: parts count by their masks):

    * ``attention_ratio``: identity vs shared over all parts (wheels included, the earlier headline);
    * ``attention_ratio_no_wheels``: the same with wheels left out (they still count towards each
      image's number of valid parts, so the uniform share stays 1.0); only with ``labels``;
    * ``attention_rel_<row>``: the mean relative weight (1.0 = uniform share) of ``identity`` and
      ``shared`` parts without wheels, ``identity_rim``, ``plain_wheel`` and ``clutter``, for the rows
      that have parts (without ``labels``: identity, shared and clutter, wheels included).
    """
    out = {"attention_ratio": role_attention(weights, roles, valid).ratio}
    split = role_attention(weights, separate_wheels(roles, labels) if labels is not None else roles, valid)
    if labels is not None:
        out["attention_ratio_no_wheels"] = split.ratio
    for row, value in split.relative.items():
        if split.count[row]:
            out[f"attention_rel_{row}"] = value
    return out


@dataclass
class AttentionSpread:
    """How concentrated the part weights are, per image, over its valid parts (non-empty masks).

    ``entropy`` is normalised by ``log(valid parts)``: 1.0 = uniform, 0.0 = all weight on one part;
    ``max_weight`` is the largest weight (1 / valid parts when uniform). Medians over images with at
    least two valid parts; ``collapsed`` is the share of those whose largest weight exceeds 0.5.
    """

    entropy_median: float
    max_weight_median: float
    collapsed: float
    images: int

    def to_dict(self) -> dict:
        return asdict(self)


def attention_spread(weights: np.ndarray, valid: np.ndarray | None = None) -> AttentionSpread:
    """:class:`AttentionSpread` of ``(N, D)`` part weights (rows summing to 1 over their valid parts);
    ``valid`` ``(N, D)`` bool marks non-empty masks (default: ``weight > 0``, see :func:`role_attention`)."""
    w = np.asarray(weights, dtype=np.float64)
    valid = w > 0 if valid is None else np.asarray(valid, dtype=bool)
    n_valid = valid.sum(1)
    keep = n_valid >= 2
    if not keep.any():
        return AttentionSpread(math.nan, math.nan, math.nan, 0)
    w, valid, n_valid = w[keep], valid[keep], n_valid[keep]
    positive = valid & (w > 0)  # 0 log 0 = 0 for a valid part whose weight is 0
    ent = -np.where(positive, w * np.log(np.where(positive, w, 1.0)), 0.0).sum(1) / np.log(n_valid)
    top = w.max(1)
    return AttentionSpread(float(np.median(ent)), float(np.median(top)), float((top > 0.5).mean()),
                           int(keep.sum()))
