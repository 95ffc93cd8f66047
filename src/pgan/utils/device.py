"""Choosing the torch device from a user's string."""

from __future__ import annotations

import torch

from pgan.errors import PganError

__all__ = ["resolve_device"]


def resolve_device(name: str, key: str = "run.device") -> torch.device:
    """``auto`` -> CUDA when visible, else CPU; a CUDA request on a CPU-only machine is a PganError
    that names ``key``, the setting to change."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise PganError(f"{key}={name} but no CUDA device is visible; set {key}=cpu (or auto)")
    if name != "cpu" and not name.startswith("cuda"):
        raise PganError(f"{key} must be auto, cpu or cuda[:N], got {name!r}")
    return torch.device(name)
