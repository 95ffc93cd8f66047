"""The re-ID network and its variants, all sharing one code path.

Variants (``VARIANTS``):

* ``baseline``: GAP + BNNeck on the backbone feature (the paper's [24], "bag of tricks"). By default
  (``baseline_reduce=True``) the pooled feature is first reduced to ``2 * reduced_dim`` (512 by
  default) by a bias-free Linear, which equals a 1x1 convolution before GAP since both are linear:
  the paper fixes the feature dimension to 512 "for all methods including the baseline model"
  (Tables II and III) but does not say how the baseline reduces; the triplet loss sees the reduced
  feature, the classifier its BNNeck output. ``baseline_reduce=False`` embeds with the backbone's own
  C channels (pgan before issue 18; checkpoints without the key load that way).
* ``pgan``: part masks from a part source, weighted by the Part Attention Module.
* ``nopam``: the same parts with equal weights (PGAN w/o PAM, Table III).
* ``grid``: PAM over a uniform grid of ``D`` cells instead of detected parts (Table III).
* ``oracle``: the same parts, weighted by a fixed softmax over ground-truth role scores instead of the
  PAM (a ceiling for what learned attention could reach): ``w = softmax_i(T_o * s_i)`` over valid parts,
  with ``s`` (B, D) given beside the masks (``role_scores=``; the engine scores identity parts 1,
  shared parts 0, clutter and unknown -1, see :mod:`pgan.engine.oracle`) and ``T_o =
  oracle_temperature`` (1.0: an identity part gets e times a shared part's weight). It has no
  trainable attention, and it needs role scores at test time too, so it is an analysis variant
  (synthetic data with ground-truth roles), not one to deploy.

Data flow (PGAN variants)::

    image -> backbone -> F_g (B,C,h,w) --PAM(masks)--> w (B,D) -> F_p = F_g (1 + sum w_i M_i)
    F_f = concat(F_g, F_p) -> Refine_f -> GAP -> f (2C') -> BN -> f_b -> classifier
    F_g -> Refine_g -> GAP -> g (C');  F_p -> Refine_p -> GAP -> p (C')   [training only]

``global_branch=True`` (part variants; a switch from issue 20, off by default, not in the paper) keeps
the baseline beside the fused head: ``g0 = GAP(F_g)`` (C channels, unreduced) gets its own BNNeck and
classifier, trained with the baseline's losses (CE on its BNNeck output, triplet on ``g0``), and the
retrieval feature is ``concat(l2(BN(g0)), l2(F_fb))``: each half L2-normalised so that neither dominates
the cosine by scale. It exists because on real photos the fused 2C' feature alone loses to the
unreduced baseline (docs/real_dev.md); with it a part head can only add to the baseline's feature.
The baseline variant ignores it (it is its own global branch).

``part_upsample=k`` (a switch from issue 18 item 3, 1 = off, the authors' form) runs the part head on a
finer grid than the backbone's last map: ``F_g`` is upsampled by ``k`` (bilinear, ``align_corners=False``)
before everything above: the PAM's mask-guided pooling, the part-guided map ``F_p`` and the Refine
branches all see the ``(k h, k w)`` map, and the part masks must be built at that size
(:func:`pgan.models.build.mask_size`, which the data pipeline, ``pgan eval``, inference and the
visualisations all use; a mismatch is an error naming both sizes). Why upsampling and not the stride-8
features: every registered backbone's wrapper returns only its last stage, and upsampling works the same
for any backbone (a module with ``out_channels``), at no new parameters. It adds no information the
backbone did not compute, but on a 10x10 map a one-cell sticker shares its cell with the glass around it;
on a 2x finer grid a fractional mask (``data.mask_mode=fraction``) puts its weight on the sub-cells the
box covers, so mask-guided pooling mixes in less of the neighbour. The head costs about ``k^2`` times
as much. The global branch's ``GAP(F_g)`` uses the backbone's own map.

``part_id=True`` (a switch from issue 18 item 3, off by default; set by ``loss.part_id_weight > 0``):
each valid part's mask-pooled feature ``mgap(F_g, M_i)`` (C channels, on the head's map) goes through
one BatchNorm (shared by all parts, statistics over the batch's valid parts, BNNeck-style without
shift) and one bias-free ``Linear(C, num_classes)`` shared by all parts; the training output carries
these logits (``part_logits``, B x D x classes, zero for empty parts) for a per-part identity loss.
Shared weights keep the parameter count independent of D and treat parts as interchangeable slots,
which they are (part order is the source's, not a fixed anatomy). Any variant with parts gets it
(nopam, grid and oracle too), so the PGAN - nopam comparison stays fair; it is not used at test time.

``box_head=True`` (a switch from issue 29, off by default) adds a part box head
(:mod:`pgan.models.box_head`) on the detached ``F_g``: in training its raw map and the input masks come
out (``box_pred``, ``box_masks``) for its loss; at test time, when no masks are given (or
``parts_from_head`` is set), its decoded boxes are rendered as the masks, and come out as ``part_boxes``.

At test time only what the retrieval feature needs is computed: with the default
``retrieval="fb"`` the Refine_g / Refine_p branches are skipped, and Refine_f runs
in its pooled, concat-free form (``Refine.forward_pooled_pair``), which is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pgan.errors import PganError, unknown_name
from pgan.models.backbones import Backbone
from pgan.models.box_head import BoxHead
from pgan.models.part_attention import (
    PartAttention,
    mask_guided_avg_pool,
    masked_softmax,
    part_guided_map,
    uniform_part_weights,
    valid_parts,
)
from pgan.models.refine import Refine
from pgan.utils.grid import grid_masks

__all__ = ["ModelOutput", "RETRIEVAL_FEATURES", "ReidNet", "VARIANTS", "VariantSpec", "bnneck_classifier",
           "build_model", "drop_parts"]


@dataclass(frozen=True)
class VariantSpec:
    uses_parts: bool  # needs a part head at all
    attention: str  # "pam" or "uniform"
    grid: bool  # masks are a fixed grid, not input masks


VARIANTS: dict[str, VariantSpec] = {
    "baseline": VariantSpec(uses_parts=False, attention="none", grid=False),
    "pgan": VariantSpec(uses_parts=True, attention="pam", grid=False),
    "nopam": VariantSpec(uses_parts=True, attention="uniform", grid=False),
    "grid": VariantSpec(uses_parts=True, attention="pam", grid=True),
    "oracle": VariantSpec(uses_parts=True, attention="oracle", grid=False),
}

RETRIEVAL_FEATURES = ("fb", "concat")


@dataclass
class ModelOutput:
    """What the network returns. Training-only fields are ``None`` in eval mode."""

    embedding: torch.Tensor  # the retrieval feature (before L2 normalisation)
    logits: torch.Tensor | None = None
    feat_f: torch.Tensor | None = None  # triplet input: refined F_f (or GAP feature for baseline)
    feat_g: torch.Tensor | None = None
    feat_p: torch.Tensor | None = None
    part_weights: torch.Tensor | None = None  # (B, D) PAM weights
    part_valid: torch.Tensor | None = None  # (B, D) bool: the part's mask is non-empty (what counts a part)
    part_map: torch.Tensor | None = None  # F_p (B, C, h, w), only with return_maps=True
    logits_global: torch.Tensor | None = None  # global_branch: the global BNNeck feature's logits
    feat_global: torch.Tensor | None = None  # global_branch: GAP(F_g), the global triplet input
    part_logits: torch.Tensor | None = None  # part_id: (B, D, classes) per-part logits, 0 for empty parts
    box_pred: torch.Tensor | None = None  # box_head, training: the head's raw (B, 5, h, w) map
    box_masks: torch.Tensor | None = None  # box_head, training: the input masks its targets come from
    part_boxes: torch.Tensor | None = None  # box_head's masks used: (B, D, 5) x1, y1, x2, y2 in [0, 1], score


class ReidNet(nn.Module):
    """Backbone + head of one variant. Build with :func:`pgan.create_model`.

    Like timm models: ``forward_features(images)`` is the feature map, ``forward_head(fmap, masks)``
    the variant's head, and ``forward`` is exactly the two in a row.
    """

    def __init__(self, backbone: Backbone | nn.Module, num_classes: int, variant: str = "pgan",
                 reduced_dim: int = 256, num_parts: int = 8, temperature: float = 10.0,
                 retrieval: str = "fb", pam_score: str = "mean", learn_temperature: bool = False,
                 part_map: str = "raw", part_dropout: float = 0.0, baseline_reduce: bool = True,
                 oracle_temperature: float = 1.0, global_branch: bool = False, part_upsample: int = 1,
                 part_id: bool = False, box_head: bool = False, box_mask_mode: str = "any",
                 box_threshold: float = 0.3) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise unknown_name("variant", variant, list(VARIANTS))
        if retrieval not in RETRIEVAL_FEATURES:
            raise unknown_name("retrieval feature", retrieval, RETRIEVAL_FEATURES)
        if num_classes < 2:
            raise PganError(f"need at least 2 training identities, got {num_classes}")
        self.backbone = backbone
        self.variant = variant
        self.spec = VARIANTS[variant]
        self.num_parts = num_parts
        self.retrieval = retrieval
        self.part_map = part_map
        if not 0.0 <= part_dropout < 1.0:
            raise PganError(f"part_dropout must be in [0, 1), got {part_dropout}")
        self.part_dropout = part_dropout
        self.oracle_temperature = oracle_temperature
        if not isinstance(part_upsample, int) or part_upsample < 1:
            raise PganError(f"part_upsample must be an integer >= 1, got {part_upsample!r}")
        self.part_upsample = part_upsample
        c = getattr(backbone, "out_channels", None)
        if not isinstance(c, int) or c < 1:
            raise PganError(f"backbone {type(backbone).__name__} needs an integer 'out_channels' attribute "
                            "(the channels of its feature map)")
        self.reduce: nn.Linear | None = None  # the baseline's reduction to 2C' (baseline_reduce)
        if self.spec.uses_parts:
            self.pam = (PartAttention(c, temperature=temperature, score=pam_score,
                                      learn_temperature=learn_temperature)
                        if self.spec.attention == "pam" else None)
            self.refine_g = Refine(c, reduced_dim)
            self.refine_p = Refine(c, reduced_dim)
            self.refine_f = Refine(2 * c, 2 * reduced_dim)
            emb_dim = 2 * reduced_dim
        else:
            global_branch = False  # the baseline is its own global branch
            # The baseline at the paper's dimension: GAP -> Linear(C, 2C') -> BNNeck (see the module doc).
            self.reduce = nn.Linear(c, 2 * reduced_dim, bias=False) if baseline_reduce else None
            emb_dim = 2 * reduced_dim if baseline_reduce else c
        self.bnneck, self.classifier = bnneck_classifier(emb_dim, num_classes)
        self.global_branch = global_branch
        self.bnneck_global: nn.BatchNorm1d | None = None
        self.classifier_global: nn.Linear | None = None
        if global_branch:
            self.bnneck_global, self.classifier_global = bnneck_classifier(c, num_classes)
        self.part_bn: nn.BatchNorm1d | None = None  # part_id: shared BNNeck + classifier of the parts
        self.part_classifier: nn.Linear | None = None
        if part_id and self.spec.uses_parts:
            self.part_bn, self.part_classifier = bnneck_classifier(c, num_classes)
        self.embedding_dim = (emb_dim + (2 * reduced_dim if retrieval == "concat" and self.spec.uses_parts else 0)
                              + (c if global_branch else 0))
        self._grid_cache: dict[tuple[int, int], torch.Tensor] = {}
        self.part_box_head: BoxHead | None = None
        self.parts_from_head = False  # test time: the box head's masks even when masks are given
        if box_head:
            if not self.spec.uses_parts or self.spec.grid:
                raise PganError(f"model.box_head needs a variant that takes part masks, not {variant!r}")
            with torch.random.fork_rng(devices=[]):  # built last, from its own random state: the rest of
                torch.manual_seed(torch.initial_seed() + 29)  # the run draws what it draws without the head
                self.part_box_head = BoxHead(c, num_parts, box_mask_mode, box_threshold)

    def grid_masks(self, h: int, w: int, ref: torch.Tensor) -> torch.Tensor:
        """The grid variant's fixed ``(D, h, w)`` cell masks, on ``ref``'s device and dtype (cached)."""
        if (h, w) not in self._grid_cache:
            self._grid_cache[(h, w)] = torch.from_numpy(grid_masks(h, w, self.num_parts))
        return self._grid_cache[(h, w)].to(ref.device, ref.dtype)

    def oracle_weights(self, role_scores: torch.Tensor | None, valid: torch.Tensor) -> torch.Tensor:
        """The oracle variant's part weights ``(B, D)``: ``softmax(T_o * role_scores)`` over the valid parts."""
        if role_scores is None:
            raise PganError("variant 'oracle' needs role scores per part (role_scores=, from ground-truth roles)")
        if role_scores.shape != valid.shape:
            raise PganError(f"role scores are {tuple(role_scores.shape)}, the masks give "
                            f"{tuple(valid.shape)} parts")
        return masked_softmax(role_scores.float() * self.oracle_temperature, valid)

    def mask_size(self, feat_h: int, feat_w: int) -> tuple[int, int]:
        """Where the part masks live for a backbone map of ``(feat_h, feat_w)``: ``part_upsample`` times it."""
        return feat_h * self.part_upsample, feat_w * self.part_upsample

    def part_identity_logits(self, fg: torch.Tensor, masks: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``(B, D, classes)`` logits of each valid part's mask-pooled feature (``part_id``), 0 for empty parts.

        The BatchNorm's batch statistics come from the valid parts only; a batch with fewer than two valid
        parts uses the running statistics (batch statistics of one sample are undefined)."""
        pooled = mask_guided_avg_pool(fg, masks)  # (B, D, C)
        rows = pooled[valid]  # (N, C)
        bn = self.part_bn
        use_batch = self.training and rows.shape[0] >= 2
        normed = F.batch_norm(rows, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                              training=use_batch, momentum=bn.momentum, eps=bn.eps)
        if use_batch:
            bn.num_batches_tracked.add_(1)
        logits = pooled.new_zeros(*valid.shape, self.part_classifier.out_features)
        logits[valid] = self.part_classifier(normed).to(logits.dtype)
        return logits

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None,
                return_maps: bool = False, role_scores: torch.Tensor | None = None) -> ModelOutput:
        """``forward_head(forward_features(images), masks)`` (``role_scores``: the oracle variant's)."""
        return self.forward_head(self.forward_features(images), masks, return_maps, role_scores)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map ``F_g`` (B, C, h, w); part masks must be built at ``(h, w)``."""
        return self.backbone(images)

    def forward_head(self, fg: torch.Tensor, masks: torch.Tensor | None = None,
                     return_maps: bool = False, role_scores: torch.Tensor | None = None) -> ModelOutput:
        """The variant's head on a feature map ``fg`` (B, C, h, w) from any backbone with C channels;
        ``role_scores`` (B, D) are needed by the ``oracle`` variant only."""
        if not self.spec.uses_parts:
            pooled = fg.mean(dim=(2, 3))
            if self.reduce is not None:
                pooled = self.reduce(pooled)
            fb = self.bnneck(pooled)
            if not self.training:
                return ModelOutput(embedding=fb)
            return ModelOutput(embedding=fb, logits=self.classifier(fb), feat_f=pooled)

        fg_backbone = fg
        if self.part_upsample > 1:  # the part head's finer grid (see the module doc)
            fg = F.interpolate(fg, scale_factor=self.part_upsample, mode="bilinear", align_corners=False)
        b, _, h, w = fg.shape
        box_pred = self.part_box_head(fg_backbone.detach()) if self.part_box_head is not None else None
        head_boxes = None
        if box_pred is not None and not self.training and (masks is None or self.parts_from_head):
            masks, boxes, scores = self.part_box_head.decoder(box_pred, (h, w))
            head_boxes = torch.cat([boxes, scores[..., None]], dim=-1)
        box_masks = masks if self.training and box_pred is not None else None
        if self.spec.grid:
            masks = self.grid_masks(h, w, fg).expand(b, -1, -1, -1)
        elif masks is None:
            raise PganError(f"variant {self.variant!r} needs part masks; none were given")
        elif masks.shape[-2:] != (h, w):
            where = ("the backbone's feature resolution" if self.part_upsample == 1 else
                     f"the backbone's {tuple(fg_backbone.shape[-2:])} x model.part_upsample={self.part_upsample}")
            raise PganError(f"part masks are {tuple(masks.shape[-2:])} but the part head's feature map is "
                            f"{(h, w)}; masks must be built at {where} (pgan.models.build.mask_size)")
        if self.training and self.part_dropout > 0 and not self.spec.grid:
            masks = drop_parts(masks, self.part_dropout)
        valid = valid_parts(masks)
        if self.spec.attention == "oracle":
            weights = self.oracle_weights(role_scores, valid)
        else:
            weights = self.pam(fg, masks) if self.pam is not None else uniform_part_weights(masks)
        fp = part_guided_map(fg, masks, weights, self.part_map)
        f = self.refine_f.forward_pooled_pair(fg, fp)  # exact; in eval mode never builds concat(F_g, F_p)
        fb = self.bnneck(f)
        maps = fp if return_maps else None
        g0 = fg_backbone.mean(dim=(2, 3)) if self.bnneck_global is not None else None
        if not self.training:
            emb = fb
            if self.retrieval == "concat":
                g = self.refine_g.forward_pooled(fg)
                p = self.refine_p.forward_pooled(fp)
                emb = torch.cat([fb, g, p], dim=1)
            if g0 is not None:
                emb = torch.cat([F.normalize(self.bnneck_global(g0), dim=1), F.normalize(emb, dim=1)], dim=1)
            return ModelOutput(embedding=emb, part_weights=weights, part_valid=valid, part_map=maps,
                               part_boxes=head_boxes)
        g = self.refine_g.forward_pooled(fg)
        p = self.refine_p.forward_pooled(fp)
        logits_global = None
        if g0 is not None:
            logits_global = self.classifier_global(self.bnneck_global(g0))
        part_logits = self.part_identity_logits(fg, masks, valid) if self.part_classifier is not None else None
        return ModelOutput(embedding=fb, logits=self.classifier(fb), feat_f=f, feat_g=g, feat_p=p,
                           part_weights=weights, part_valid=valid, part_map=maps,
                           logits_global=logits_global, feat_global=g0, part_logits=part_logits,
                           box_pred=box_pred, box_masks=box_masks)


def bnneck_classifier(dim: int, num_classes: int) -> tuple[nn.BatchNorm1d, nn.Linear]:
    """A BNNeck (BatchNorm without shift, as in the bag-of-tricks baseline) and its bias-free identity
    classifier (weights ~ N(0, 0.001^2)), for a ``dim``-d feature: the fused head's, the global branch's and
    the per-part classifier's."""
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)
    classifier = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(classifier.weight, std=0.001)
    return bn, classifier


def drop_parts(masks: torch.Tensor, p: float) -> torch.Tensor:
    """Part dropout (a switch against attention collapse, training only): each part's mask is zeroed with
    probability ``p``, so the PAM cannot rely on one part always being there. A dropped part is an empty
    mask, which the PAM and the part map already treat as absent."""
    keep = torch.rand(masks.shape[:2], device=masks.device) >= p
    return masks * keep[..., None, None].to(masks.dtype)


def build_model(variant: str, backbone: Backbone, num_classes: int, **kwargs) -> ReidNet:
    """``build_model("pgan", build_backbone("resnet50"), num_classes=576)``."""
    return ReidNet(backbone, num_classes, variant=variant, **kwargs)
