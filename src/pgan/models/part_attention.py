"""Part Feature Learning: mask-guided pooling and the Part Attention Module (PAM).

Shapes: feature map ``F_g`` is ``(B, C, H, W)``; part masks ``M`` are
``(B, D, H, W)`` in {0, 1}, all-zero for padding parts.

The part features ``F_i = M_i * F_g`` are never materialised as a
``(B, D, C, H, W)`` tensor: pooling is one einsum, and the part-guided map is
``F_p = sum_i w_i F_i + F_g = F_g * (1 + sum_i w_i M_i)``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def mask_guided_avg_pool(feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """``mgap(F_i, M_i) = sum(M_i * F_g) / ||M_i||_1`` per channel -> ``(B, D, C)``.

    An empty mask gives a zero vector (never a division by zero or a NaN), and its
    gradient is zero too.
    """
    summed = torch.einsum("bdhw,bchw->bdc", masks.to(feat.dtype), feat)
    area = masks.flatten(2).sum(-1, keepdim=True).to(feat.dtype)  # (B, D, 1)
    return summed / area.clamp_min(1.0)


def valid_parts(masks: torch.Tensor) -> torch.Tensor:
    """``(B, D)`` bool: which parts have a non-empty mask."""
    return masks.flatten(2).amax(-1) > 0


def masked_softmax(scores: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Softmax over parts that ignores invalid ones; a row with no valid part gives all zeros."""
    scores = scores.masked_fill(~valid, float("-inf"))
    any_valid = valid.any(-1, keepdim=True)
    scores = torch.where(any_valid, scores, torch.zeros_like(scores))
    return torch.softmax(scores, dim=-1) * valid.to(scores.dtype)


class PartAttention(nn.Module):
    """The PAM: ``w = softmax_i(T * mean(psi(mgap(F_i, M_i))))``.

    ``psi`` follows the authors' code: weight-normalised Linear(C -> C/4, no bias),
    LayerNorm, ReLU, weight-normalised Linear(C/4 -> C, no bias); its C outputs are
    averaged into one score per part; temperature ``T = 10``.
    """

    def __init__(self, channels: int, hidden: int | None = None, temperature: float = 10.0) -> None:
        super().__init__()
        hidden = hidden or max(channels // 4, 8)
        self.psi = nn.Sequential(
            weight_norm(nn.Linear(channels, hidden, bias=False)),
            nn.LayerNorm(hidden),
            nn.ReLU(inplace=True),
            weight_norm(nn.Linear(hidden, channels, bias=False)),
        )
        self.temperature = temperature

    def forward(self, feat: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Part weights ``(B, D)``: sum to 1 over valid parts, 0 on empty ones."""
        pooled = mask_guided_avg_pool(feat, masks)  # (B, D, C)
        scores = self.psi(pooled).mean(-1) * self.temperature  # (B, D)
        return masked_softmax(scores, valid_parts(masks))


def uniform_part_weights(masks: torch.Tensor) -> torch.Tensor:
    """Equal weights over the valid parts (the "PGAN w/o PAM" ablation)."""
    valid = valid_parts(masks).to(masks.dtype)
    return valid / valid.sum(-1, keepdim=True).clamp_min(1.0)


def part_guided_map(feat: torch.Tensor, masks: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``F_p = sum_i w_i (M_i * F_g) + F_g`` computed as ``F_g * (1 + sum_i w_i M_i)``."""
    attention = torch.einsum("bd,bdhw->bhw", weights.to(feat.dtype), masks.to(feat.dtype))
    return feat * (1.0 + attention).unsqueeze(1)
