"""Decode an image file to a tensor (shared by part extraction and the detector's data)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pgan.errors import PganError

__all__ = ["load_rgb"]


def load_rgb(path: Path) -> torch.Tensor:
    """``uint8 (3, H, W)`` RGB at the file's own size; PganError for an unreadable file."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as exc:
        raise PganError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()
