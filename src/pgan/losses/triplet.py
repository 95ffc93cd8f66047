"""Batch-hard triplet loss (Hermans et al. 2017), as in the authors' code (margin 0.3, Euclidean)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet(feats: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Mean over anchors of ``relu(max d(a, p) - min d(a, n) + margin)``.

    Anchors with no positive or no negative in the batch are left out; a batch
    with none left gives a zero loss that still has a graph.
    """
    dist = pairwise_euclidean(feats.float())
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos_mask, neg_mask = same & ~eye, ~same
    hardest_pos = dist.masked_fill(~pos_mask, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(~neg_mask, float("inf")).amin(1)
    ok = pos_mask.any(1) & neg_mask.any(1)
    if not ok.any():
        return feats.sum() * 0.0
    return F.relu(hardest_pos[ok] - hardest_neg[ok] + margin).mean()
