"""The paper's objective: ``L = lambda * CE(F_fb) + Tri(F_f) + Tri(F_g) + Tri(F_p)``.

``terms`` selects the summands for the loss ablation (Table II): ``"ce"``,
``"f"``, ``"g"``, ``"p"``. For the baseline only ``ce`` and ``f`` apply (its
``f`` is the GAP feature), and missing features are skipped.

A model with ``global_branch`` also returns the baseline's outputs beside the fused head's; they get
the baseline's two losses under the same switches: ``ce_global`` (with ``ce``, weighted by lambda too)
and ``global`` (a triplet on the GAP feature, with ``f``).

``entropy_floor`` (a switch against attention collapse, 0 = off) adds ``entropy``:
``entropy_weight * mean_b relu(floor - H(w_b) / log n_b)`` over images with ``n_b >= 2`` valid parts,
where ``H`` is the entropy of the PAM's weights over the valid parts (1 = uniform after the division).

``part_id_weight`` (issue 18, 0 = off) adds ``part_id``: ``part_id_weight * CE`` of the model's per-part
logits (``ModelOutput.part_logits``, a model built with ``part_id``) against the image's identity, averaged
over every valid part of the batch (parts count by their masks, ``part_valid``; empty parts are left out),
with the same label smoothing as ``ce``. Independent of ``terms``.

``box_weight`` (1 by default) weights ``box``, the part box head's CenterNet loss
(:func:`pgan.models.box_head.box_head_loss`; targets from the batch's masks, rasterised with ``mask_mode``),
added whenever the model has a box head (``ModelOutput.box_pred``). Independent of ``terms``; the head sees
a detached feature map, so this term trains the head alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pgan.errors import PganError
from pgan.losses.triplet import batch_hard_triplet
from pgan.models.box_head import box_head_loss
from pgan.models.network import ModelOutput

__all__ = ["LOSS_TERMS", "LossBreakdown", "PganLoss", "entropy_shortfall", "part_identity_loss"]

LOSS_TERMS = ("ce", "f", "g", "p")


@dataclass
class LossBreakdown:
    total: torch.Tensor
    parts: dict[str, float]


class PganLoss:
    def __init__(self, lambda_ce: float = 2.0, margin: float = 0.3, label_smoothing: float = 0.0,
                 terms: tuple[str, ...] = LOSS_TERMS,
                 gather: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
                 entropy_floor: float = 0.0, entropy_weight: float = 1.0, part_id_weight: float = 0.0,
                 box_weight: float = 1.0, mask_mode: str = "any") -> None:
        bad = [t for t in terms if t not in LOSS_TERMS]
        if bad or not terms:
            raise PganError(f"loss terms {list(terms)} invalid; choose from {list(LOSS_TERMS)}")
        self.lambda_ce, self.margin, self.label_smoothing = lambda_ce, margin, label_smoothing
        self.terms = tuple(terms)
        # Under DDP: gathers (features, labels) of all ranks so mining covers the global batch.
        self.gather = gather
        if not 0.0 <= entropy_floor <= 1.0:
            raise PganError(f"entropy_floor is a normalised entropy in [0, 1], got {entropy_floor}")
        self.entropy_floor, self.entropy_weight = entropy_floor, entropy_weight
        if not part_id_weight >= 0.0:
            raise PganError(f"part_id_weight must be >= 0, got {part_id_weight}")
        self.part_id_weight = part_id_weight
        if not box_weight >= 0.0:
            raise PganError(f"box_weight must be >= 0, got {box_weight}")
        self.box_weight, self.mask_mode = box_weight, mask_mode

    def __call__(self, out: ModelOutput, labels: torch.Tensor) -> LossBreakdown:
        parts: dict[str, torch.Tensor] = {}
        if "ce" in self.terms and out.logits is not None:
            parts["ce"] = self.lambda_ce * F.cross_entropy(out.logits.float(), labels,
                                                           label_smoothing=self.label_smoothing)
        if "ce" in self.terms and out.logits_global is not None:
            parts["ce_global"] = self.lambda_ce * F.cross_entropy(out.logits_global.float(), labels,
                                                                  label_smoothing=self.label_smoothing)
        for key, term, feat in (("f", "f", out.feat_f), ("g", "g", out.feat_g), ("p", "p", out.feat_p),
                                ("global", "f", out.feat_global)):
            if term in self.terms and feat is not None:
                feats, labs = self.gather(feat, labels) if self.gather is not None else (feat, labels)
                parts[key] = batch_hard_triplet(feats, labs, self.margin)
        if self.entropy_floor > 0 and out.part_weights is not None and out.part_valid is not None:
            parts["entropy"] = self.entropy_weight * entropy_shortfall(out.part_weights, out.part_valid,
                                                                       self.entropy_floor)
        if self.part_id_weight > 0:
            if out.part_logits is None or out.part_valid is None:
                raise PganError("loss.part_id_weight > 0 needs a model with parts built with the per-part "
                                "classifier (part_id=True); this model returns no part logits")
            parts["part_id"] = self.part_id_weight * part_identity_loss(out.part_logits, out.part_valid, labels,
                                                                        self.label_smoothing)
        if out.box_pred is not None and out.box_masks is not None and self.box_weight > 0:
            parts["box"] = self.box_weight * box_head_loss(out.box_pred, out.box_masks, self.mask_mode)
        if not parts:
            raise PganError(f"none of the loss terms {list(self.terms)} applies to this model's outputs")
        total = sum(parts.values())
        return LossBreakdown(total, {k: float(v.detach()) for k, v in parts.items()})


def entropy_shortfall(weights: torch.Tensor, valid: torch.Tensor, floor: float) -> torch.Tensor:
    """``mean_b relu(floor - H(w_b) / log n_b)`` over the images with at least two valid parts (0 if none):
    how far each image's part weights fall below a normalised entropy ``floor``."""
    n = valid.sum(-1)
    keep = n >= 2
    if not bool(keep.any()):
        return weights.sum() * 0.0
    w = torch.where(valid, weights.float().clamp_min(1e-12), torch.ones_like(weights, dtype=torch.float))
    h = -(w * w.log()).sum(-1)[keep] / n[keep].float().log()  # invalid slots: 1 * log 1 = 0
    return torch.relu(floor - h).mean()


def part_identity_loss(part_logits: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor,
                       label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of each valid part's logits ``(B, D, classes)`` against its image's label, averaged over
    the valid parts (``valid`` (B, D), by mask); 0 (with a gradient path) when no part is valid."""
    if not bool(valid.any()):
        return part_logits.sum() * 0.0
    targets = labels[:, None].expand_as(valid)[valid]
    return F.cross_entropy(part_logits[valid].float(), targets, label_smoothing=label_smoothing)
