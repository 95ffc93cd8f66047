"""Checkpoints as the trainer writes them: atomic saves and everything needed to resume exactly.

Everything in a checkpoint is a tensor, a number, a string or a plain container
(the numpy and Python RNG states are stored as lists), so
:func:`pgan.models.trained.load_checkpoint` reads it with ``torch.load(weights_only=True)``:
loading never runs code from the file. The reader sits beside the network
(:mod:`pgan.models.trained`) so that inference needs no training code.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgan.utils.atomic import atomic_torch_save


def rng_state() -> dict:
    """The torch / numpy / Python / CUDA RNG states as tensors and plain types (``weights_only``-safe)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"name": str(name), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
                      "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": int(version), "internal": list(internal), "gauss_next": gauss_next},
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` (also the tuple form older checkpoints stored)."""
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    if isinstance(npy, dict):
        keys = np.asarray(npy["keys"].numpy() if torch.is_tensor(npy["keys"]) else npy["keys"], dtype=np.uint32)
        npy = (npy["name"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    np.random.set_state(npy)
    py = state["python"]
    if isinstance(py, dict):
        py = (py["version"], tuple(py["internal"]), py["gauss_next"])
    random.setstate(py)
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, **payload: Any) -> None:
    atomic_torch_save(payload, path)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DistributedDataParallel (or the model itself)."""
    return model.module if hasattr(model, "module") else model
