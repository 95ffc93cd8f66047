"""A trained network's checkpoint file: read it safely, and rebuild the network it holds.

Everything in a checkpoint is a tensor, a number, a string or a plain container, so
:func:`load_checkpoint` reads it with ``torch.load(weights_only=True)``: loading never runs code from
the file. Older checkpoints that pickled the RNG tuples load only with ``trust=True`` (see
:mod:`pgan.utils.safe_load`). A training checkpoint (written by :func:`pgan.engine.train.train`, see
:mod:`pgan.engine.checkpoint`) holds ``model`` (the state dict), ``config`` (the config as trained)
and ``num_classes``: that is all :func:`load_trained` needs, so inference depends on the network and
this file, not on the training code.

Example::

    net, cfg = load_trained("runs/demo/pgan/last.pt")   # eval mode, on CPU
"""

from __future__ import annotations

from pathlib import Path

import torch

from pgan.config import Config, restore_config
from pgan.errors import PganError
from pgan.models.build import build_network
from pgan.models.network import ReidNet
from pgan.utils.safe_load import safe_torch_load

__all__ = ["load_checkpoint", "load_trained"]


def load_checkpoint(path: str | Path, trust: bool | None = None) -> dict:
    """Read a checkpoint on CPU without running code from it; the one loader pgan uses.

    ``trust=True`` (or ``PGAN_TRUST_CHECKPOINT=1``; ``None`` reads the environment) allows
    the full unpickler for checkpoints written before the safe format, with a warning.
    Errors (missing, truncated, foreign, not a dict, untrusted pickle) are one-line
    :class:`PganError`.
    """
    ckpt = safe_torch_load(path, trust, "checkpoint")
    if not isinstance(ckpt, dict):
        raise PganError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a pgan checkpoint (a dict)")
    return ckpt


def load_trained(checkpoint: str | Path, device: torch.device | None = None) -> tuple[ReidNet, Config]:
    """Rebuild a trained network (and its config) from a checkpoint written by :func:`pgan.engine.train.train`."""
    ckpt = load_checkpoint(checkpoint)
    if "config" not in ckpt or "num_classes" not in ckpt:
        raise PganError(f"{checkpoint} is not a pgan training checkpoint (no config inside)")
    cfg = restore_config(ckpt["config"], str(checkpoint))  # keys it lacks: as trained (LEGACY_DEFAULTS)
    model = build_network(cfg, ckpt["num_classes"], pretrained=False)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise PganError(f"{checkpoint}: weights do not fit variant {cfg.model.variant!r} "
                        f"with backbone {cfg.model.backbone!r}: {str(exc).splitlines()[0]}") from None
    model.to(device or torch.device("cpu")).eval()
    return model, cfg
