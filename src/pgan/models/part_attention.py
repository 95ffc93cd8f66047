"""Part Feature Learning: mask-guided pooling and the Part Attention Module (PAM).

Shapes: feature map ``F_g`` is ``(B, C, H, W)``; part masks ``M`` are
``(B, D, H, W)`` in {0, 1}, or in [0, 1] with ``data.mask_mode=fraction`` (each cell's
covered share), all-zero for padding parts. Every division by a mask's area divides by the
area itself when it is positive (a fractional part may cover less than one cell) and leaves
empty masks at zero.

The part features ``F_i = M_i * F_g`` are never materialised as a
``(B, D, C, H, W)`` tensor: pooling is one einsum, and the part-guided map is
``F_p = sum_i w_i F_i + F_g = F_g * (1 + sum_i w_i M_i)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["PAM_SCORES", "PART_MAPS", "PartAttention", "attention_map", "mask_guided_avg_pool",
           "masked_softmax", "part_guided_map", "temperature_warmup_scale", "uniform_part_weights", "valid_parts"]


def mask_guided_avg_pool(feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``mgap(F_i, M_i) = sum(M_i * F_g) / ||M_i||_1`` per channel -> ``(B, D, C)``.

    With fractional masks this is the mean weighted by each cell's covered share. An empty mask
    gives a zero vector (never a division by zero or a NaN), and its gradient is zero too.
    """
    summed = torch.einsum("bdhw,bchw->bdc", masks.to(feat.dtype), feat)
    area = masks.flatten(2).sum(-1, keepdim=True).to(feat.dtype)  # (B, D, 1)
    return summed / _safe_area(area)


def _safe_area(area: torch.Tensor) -> torch.Tensor:
    """``area`` where positive, 1 where the mask is empty (its sums are 0, so the quotient is 0)."""
    return torch.where(area > 0, area, torch.ones_like(area))


def valid_parts(masks: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` bool: which parts have a non-empty mask."""
    return masks.flatten(2).amax(-1) > 0


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over parts that ignores invalid ones; a row with no valid part gives all zeros.

    A valid part never gets exactly 0: with ``T = 10`` a score gap above about 10 already makes
    ``exp`` underflow in float32, so valid weights are clamped to the dtype's smallest normal number
    (``1.2e-38`` in float32; the sum moves by less than ``D`` times that). Code that counts parts
    still decides validity by the mask (``ModelOutput.part_valid``), not by ``weight > 0``.
    """
    scores = scores.masked_fill(~valid, float("-inf"))
    any_valid = valid.any(-1, keepdim=True)
    scores = torch.where(any_valid, scores, torch.zeros_like(scores))
    weights = torch.softmax(scores, dim=-1)
    floor = torch.finfo(weights.dtype).tiny
    return torch.where(valid, weights.clamp_min(floor), torch.zeros_like(weights))


PAM_SCORES = ("mean", "single")


class PartAttention(nn.Module):
    """The PAM: ``w = softmax_i(T * score(psi(mgap(F_i, M_i))))``.

    ``psi`` follows the authors' code: weight-normalised Linear(C -> C/4, no bias),
    LayerNorm, ReLU, then (``score="mean"``, the default) weight-normalised
    Linear(C/4 -> C, no bias) whose C outputs are averaged into one score per part;
    temperature ``T = 10``. Switches (off by default, see ``docs/attention.md``):

    * ``score="single"``: a plain Linear(C/4 -> 1) score head instead of averaging C outputs;
    * ``learn_temperature``: ``T`` becomes a learnable scale (stored as ``log T``);
    * ``temperature_scale`` (a plain attribute, 1.0 by default): multiplies ``T``; the trainer sets it
      each step for a temperature warm-up (:func:`temperature_warmup_scale`, ``model.temperature_warmup``).
    """

    def __init__(self, channels: int, hidden: int | None = None, temperature: float = 10.0,
                 score: str = "mean", learn_temperature: bool = False) -> None:
        super().__init__()
        if score not in PAM_SCORES:
            raise ValueError(f"PAM score head {score!r} must be one of {PAM_SCORES}")
        hidden = hidden or max(channels // 4, 8)
        head = weight_norm(nn.Linear(hidden, channels, bias=False)) if score == "mean" else nn.Linear(hidden, 1)
        self.psi = nn.Sequential(
            weight_norm(nn.Linear(channels, hidden, bias=False)),
            nn.LayerNorm(hidden),
            nn.ReLU(inplace=True),
            head,
        )
        if score == "single":  # start from uniform weights, as the "mean" head nearly does
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.score = score
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t, persistent=False)
        self.temperature_scale = 1.0  # not state: a warm-up recomputes it from the step, so resume is exact

    @property
    def temperature(self) -> float:
        return float(self.log_temperature.detach().exp())

    def scores(self, feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Unnormalised part scores ``(B, D)`` (before the masked softmax)."""
        pooled = mask_guided_avg_pool(feat, masks)  # (B, D, C)
        return self.psi(pooled).mean(-1) * (self.log_temperature.exp() * self.temperature_scale)

    def forward(self, feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Part weights ``(B, D)``: sum to 1 over valid parts, 0 on empty ones."""
        return masked_softmax(self.scores(feat, masks), valid_parts(masks))


def temperature_warmup_scale(epoch: float, warmup_epochs: float, temperature: float) -> float:
    """The PAM's temperature multiplier at fractional ``epoch`` of a warm-up (a switch against collapse):
    the effective temperature rises linearly from 1 to ``temperature`` over ``warmup_epochs``, so the
    weights start near uniform and sharpen as the scores become meaningful; 1.0 once it is over (or off)."""
    if warmup_epochs <= 0 or epoch >= warmup_epochs or temperature <= 1.0:
        return 1.0
    t_eff = 1.0 + (temperature - 1.0) * max(epoch, 0.0) / warmup_epochs
    return t_eff / temperature


def uniform_part_weights(masks: torch.Tensor) -> torch.Tensor:
    """Equal weights over the valid parts (the "PGAN w/o PAM" ablation)."""
    valid = valid_parts(masks).to(masks.dtype)
    return valid / valid.sum(-1, keepdim=True).clamp_min(1.0)


PART_MAPS = ("raw", "area")


def attention_map(masks: torch.Tensor, weights: torch.Tensor, mode: str = "raw") -> torch.Tensor:
    """``sum_i w_i M_i`` ``(B, h, w)``; ``mode="area"`` scales each mask by ``mean area / its area``
    first (see :func:`part_guided_map`)."""
    m = masks.to(weights.dtype)
    if mode == "area":
        area = m.flatten(2).sum(-1)  # (B, D)
        valid = area > 0
        mean_area = area.sum(-1, keepdim=True) / valid.sum(-1, keepdim=True).clamp_min(1)
        m = m * (mean_area / _safe_area(area)).unsqueeze(-1).unsqueeze(-1)
    elif mode != "raw":
        raise ValueError(f"part map mode {mode!r} must be one of {PART_MAPS}")
    return torch.einsum("bd,bdhw->bhw", weights, m)


def part_guided_map(feat: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor,
                    mode: str = "raw") -> torch.Tensor:
    """``F_p = sum_i w_i (M_i * F_g) + F_g`` computed as ``F_g * (1 + sum_i w_i M_i)``.

    ``mode="area"`` (a switch, off by default) scales each part's mask by ``mean area / its area``
    (areas of the image's valid parts, no gradient), so with equal weights every part adds the same
    mass to ``F_p`` whatever its size: in the raw form a part's effect on the pooled feature, and so
    the gradient its weight receives, grows with its area, which steers the PAM to large parts.
    """
    attention = attention_map(masks.to(feat.dtype), weights.to(feat.dtype), mode)
    return feat * (1.0 + attention).unsqueeze(1)
