"""Joint image + mask transforms on tensors.

Images arrive as ``uint8 (3, H, W)`` at the network's input size, masks as
``float (D, h, w)`` at the feature-map size. Horizontal flip flips both; random
erasing touches the image only (as in the authors' code: the part regions stay
where the detector put them).
"""

from __future__ import annotations

import torch
from torchvision.transforms import RandomErasing

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "JointTransform", "hflip_pair", "normalize"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def hflip_pair(image: torch.Tensor, masks: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Mirror image and masks along the width axis."""
    return image.flip(-1), (masks.flip(-1) if masks is not None else None)


def normalize(image_u8: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image_u8.float() / 255.0 - mean) / std


class JointTransform:
    """Training (flip + erasing, p=0.5 each by default) or evaluation (normalise only)."""

    def __init__(self, train: bool, flip_p: float = 0.5, erase_p: float = 0.5) -> None:
        self.train = train
        self.flip_p = flip_p
        # value=0 after normalisation is the ImageNet mean colour.
        self.erase = RandomErasing(p=erase_p, value=0) if train and erase_p > 0 else None

    def __call__(self, image_u8: torch.Tensor, masks: torch.Tensor | None):
        image = normalize(image_u8)
        if self.train:
            if self.flip_p > 0 and torch.rand(()) < self.flip_p:
                image, masks = hflip_pair(image, masks)
            if self.erase is not None:
                image = self.erase(image)
        return image, masks
