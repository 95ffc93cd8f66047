"""The detector's own backbone: torchvision's MobileNetV2 cut into stages by output stride.

Kept apart from :mod:`pgan.models.backbones` on purpose: part regions are bottom-up, independent of the
re-ID network, so the detector builds its trunk from torchvision directly. The module layout
(``stages.0`` .. ``stages.4``) matches the checkpoints written before the split.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from pgan.errors import PganError

# MobileNetV2 ``features`` indices of each stage: output strides 2, 4, 8, 16, 32.
STAGE_BOUNDS = ((0, 2), (2, 4), (4, 7), (7, 14), (14, 19))


class StageBackbone(nn.Module):
    """``stages`` applied in order; the first ``frozen_stages`` have no gradient."""

    def __init__(self, stages: list[nn.Module], frozen_stages: int = 0) -> None:
        super().__init__()
        if not 0 <= frozen_stages <= len(stages):
            raise PganError(f"frozen_stages={frozen_stages} is outside 0..{len(stages)} for the detector")
        self.stages = nn.ModuleList(stages)
        self.frozen_stages = frozen_stages
        for stage in self.stages[:frozen_stages]:
            for p in stage.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> StageBackbone:
        super().train(mode)
        for stage in self.stages[: self.frozen_stages]:
            stage.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


def mobilenet_v2_stages(pretrained: bool = True, frozen_stages: int = 0) -> StageBackbone:
    """MobileNetV2 as five stages; ``pretrained`` loads torchvision's ImageNet file from the hub cache
    (``make install`` puts it there) or downloads it; neither working is one clear error."""
    weights = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1 if pretrained else None
    try:
        net = torchvision.models.mobilenet_v2(weights=weights)
    except Exception as exc:  # network errors come in many types (URLError, OSError, ...)
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        raise PganError(f"ImageNet weights for the detector's MobileNetV2 are not in {cache} and could not be "
                        f"downloaded ({type(exc).__name__}); run 'make install' or pass pretrained=False"
                       ) from None
    return StageBackbone([nn.Sequential(*net.features[a:b]) for a, b in STAGE_BOUNDS], frozen_stages)
