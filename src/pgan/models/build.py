"""From a :class:`pgan.config.Config` to the re-ID network, the fast-reid ``modeling/build.py`` way.

The network's constructor (:class:`pgan.models.network.ReidNet`) takes plain arguments; this module
alone maps the config's ``model`` section (and ``data.num_parts``) onto them.
"""

from __future__ import annotations

import torch

from pgan.config import Config
from pgan.models.backbones import build_backbone
from pgan.models.network import ReidNet

__all__ = ["build_network", "feature_size"]


def feature_size(backbone: torch.nn.Module, input_size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` of ``backbone``'s feature map for an ``input_size`` image (one dry run)."""
    with torch.no_grad():
        was = backbone.training
        backbone.eval()
        fh, fw = backbone(torch.zeros(1, 3, *input_size)).shape[-2:]
        backbone.train(was)
    return int(fh), int(fw)


def build_network(cfg: Config, num_classes: int, pretrained: bool | None = None) -> ReidNet:
    m = cfg.model
    backbone = build_backbone(m.backbone, m.pretrained if pretrained is None else pretrained,
                              m.last_stride, m.frozen_stages)
    return ReidNet(backbone, num_classes, variant=m.variant, reduced_dim=m.reduced_dim,
                   num_parts=cfg.data.num_parts, temperature=m.temperature, retrieval=m.retrieval,
                   pam_score=m.pam_score, learn_temperature=m.learn_temperature, part_map=m.part_map,
                   part_dropout=m.part_dropout, baseline_reduce=m.baseline_reduce,
                   oracle_temperature=m.oracle_temperature, global_branch=m.global_branch)
