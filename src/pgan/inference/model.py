"""A trained re-ID network ready for inference, and the fingerprint that names its weights.

Checkpoints are read only through :func:`pgan.models.trained.load_checkpoint`
(via :func:`pgan.models.trained.load_trained`); the network is rebuilt from the
config stored inside, so nothing but the file is needed, and nothing of the
training code (``pgan.engine``) is imported.

Example::

    tm = load_model("runs/demo/pgan/last.pt")
    tm.network(images, masks).embedding      # (B, d) F_fb, before L2 normalisation
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from pgan.config import Config
from pgan.models.build import mask_size
from pgan.models.network import VARIANTS, ReidNet
from pgan.models.trained import load_trained
from pgan.utils.device import resolve_device


@dataclass
class TrainedModel:
    """The network (eval mode), the config it was trained with, and what inference needs to know."""

    network: ReidNet
    config: Config
    checkpoint: Path
    fingerprint: str  # hash of the weights and of the settings that change the embedding
    input_size: tuple[int, int]  # (H, W) the images are resized to
    feat_size: tuple[int, int]  # (h, w) where the part masks live: the backbone's map x model.part_upsample

    @property
    def embedding_dim(self) -> int:
        return int(self.network.embedding_dim)

    @property
    def needs_masks(self) -> bool:
        """True when the network takes part masks as input (pgan, nopam); grid builds its own."""
        spec = VARIANTS[self.network.variant]
        return spec.uses_parts and not spec.grid

    @property
    def device(self) -> torch.device:
        return next(self.network.parameters()).device


def weights_fingerprint(network: torch.nn.Module, extra: str = "") -> str:
    """16 hex digits of SHA-256 over every tensor of the state dict (name, shape, dtype, bytes) and
    ``extra``: two models embed alike exactly when their fingerprints match."""
    h = hashlib.sha256(extra.encode())
    for name, tensor in sorted(network.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def config_from_dict(values: dict, where: str) -> Config:
    """A :class:`Config` from its ``to_dict()`` form (as stored in checkpoints and ONNX metadata)."""
    from pgan.config import load_config, set_value

    cfg = load_config()
    for section, items in values.items():
        for key, value in items.items():
            set_value(cfg, f"{section}.{key}", value, where)
    return cfg


def load_model(checkpoint: str | Path, device: str = "cpu") -> TrainedModel:
    """The network of a ``pgan train`` checkpoint in eval mode, with its config and fingerprint."""
    net, cfg = load_trained(checkpoint, torch.device("cpu"))
    input_size = (int(cfg.data.input_size[0]), int(cfg.data.input_size[1]))
    settings = (f"{cfg.model.variant}|{cfg.model.backbone}|{input_size}|{cfg.data.num_parts}|"
                f"{cfg.model.retrieval}" + (f"|up{net.part_upsample}" if net.part_upsample != 1 else ""))
    fp = weights_fingerprint(net, settings)
    feat = mask_size(net, input_size)
    net.to(resolve_device(device, "device")).eval()
    return TrainedModel(net, cfg, Path(checkpoint).resolve(), fp, input_size, feat)
