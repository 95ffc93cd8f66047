"""From a :class:`pgan.config.Config` to the re-ID network, the fast-reid ``modeling/build.py`` way.

The network's constructor (:class:`pgan.models.network.ReidNet`) takes plain arguments; this module
alone maps the config's ``model`` section (and ``data.num_parts``, ``data.mask_mode`` for the box head,
and ``loss.part_id_weight > 0``, which adds the per-part classifier the per-part identity loss needs) onto
them.
"""

from __future__ import annotations

import torch

from pgan.config import Config
from pgan.models.backbones import build_backbone
from pgan.models.network import ReidNet

__all__ = ["build_network", "feature_size", "mask_size"]


def feature_size(backbone: torch.nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` of ``backbone``'s feature map for an ``input_size`` image (one dry run)."""
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        fh, fw = backbone(torch.zeros(1, 3, *input_size)).shape[-2:]
        backbone.train(was)
    return int(fh), int(fw)


def mask_size(model: ReidNet, input_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` at which ``model``'s part masks are built for an ``input_size`` image: the backbone's
    feature map times ``model.part_upsample`` (1 by default, so the feature map itself). Every place that
    builds masks for a network (training and evaluation sets, test-time parts, visualisations) asks this."""
    return model.mask_size(*feature_size(model.backbone, input_size))


def build_network(cfg: Config, num_classes: int, pretrained: bool | None = None) -> ReidNet:
    m = cfg.model
    backbone = build_backbone(m.backbone, m.pretrained if pretrained is None else pretrained,
                              m.last_stride, m.frozen_stages)
    return ReidNet(backbone, num_classes, variant=m.variant, reduced_dim=m.reduced_dim,
                   num_parts=cfg.data.num_parts, temperature=m.temperature, retrieval=m.retrieval,
                   pam_score=m.pam_score, learn_temperature=m.learn_temperature, part_map=m.part_map,
                   part_dropout=m.part_dropout, baseline_reduce=m.baseline_reduce,
                   oracle_temperature=m.oracle_temperature, global_branch=m.global_branch,
                   part_upsample=m.part_upsample, part_id=cfg.loss.part_id_weight > 0, box_head=m.box_head,
                   box_mask_mode=cfg.data.mask_mode, box_threshold=m.box_threshold)
