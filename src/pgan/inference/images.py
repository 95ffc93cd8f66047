"""Query and gallery inputs -> the tensors the network eats, exactly as evaluation prepares them.

Accepted inputs (:data:`ImageInput`): a file path, a PIL image, an ``H x W x 3``
``uint8`` numpy array, or a ``(3, H, W)`` tensor (``uint8``, or float in [0, 1]).
Every input goes through PIL: RGB, bilinear resize to the network's input size,
ImageNet normalisation, the same steps as
:func:`pgan.data.image_dataset.load_image` + :func:`pgan.data.transforms.normalize`,
so a gallery image embeds here as it does in ``pgan eval``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image

from pgan.data.transforms import normalize
from pgan.errors import NotAnImageError

__all__ = ["DecodedImage", "ImageInput", "decode", "network_input"]

ImageInput = Union[str, Path, Image.Image, np.ndarray, torch.Tensor, "DecodedImage"]


@dataclass
class DecodedImage:
    """One input, decoded: the full-size RGB image (parts are found on it) and where it came from."""

    rgb: np.ndarray  # (H, W, 3) uint8, original size
    path: Path | None  # the file, when the input was one

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    def chw_uint8(self) -> torch.Tensor:
        return torch.from_numpy(self.rgb.copy()).permute(2, 0, 1).contiguous()


def decode(item: ImageInput) -> DecodedImage:
    """Decode one input; :class:`NotAnImageError` (one line, naming the file) if it is not an image."""
    if isinstance(item, DecodedImage):
        return item
    if isinstance(item, (str, Path)):
        path = Path(item)
        try:
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise NotAnImageError(f"cannot read image {path}: {reason}") from None
        return DecodedImage(rgb, path)
    if isinstance(item, Image.Image):
        return DecodedImage(np.asarray(item.convert("RGB"), dtype=np.uint8), None)
    if isinstance(item, torch.Tensor):
        t = item.detach().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            raise NotAnImageError(f"an image tensor must be (3, H, W), got {tuple(t.shape)}")
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return DecodedImage(t.permute(1, 2, 0).contiguous().numpy(), None)
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise NotAnImageError(f"an image array must be (H, W, 3) uint8, got {item.shape} {item.dtype}")
        return DecodedImage(np.ascontiguousarray(item), None)
    raise NotAnImageError(f"not an image input: {type(item).__name__}")


def network_input(image: DecodedImage, input_size: tuple[int, int]) -> torch.Tensor:
    """``(3, H, W)`` float, resized to ``input_size = (H, W)`` and normalised."""
    im = Image.fromarray(image.rgb).resize((input_size[1], input_size[0]), Image.BILINEAR)
    arr = np.asarray(im, dtype=np.uint8)
    return normalize(torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous())
