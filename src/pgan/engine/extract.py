"""Feature extraction: the retrieval feature of every image, optionally with flip TTA."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

__all__ = ["Features", "extract_features"]


@dataclass
class Features:
    feats: torch.Tensor  # (N, d) float32, L2-normalised
    pids: np.ndarray
    camids: np.ndarray
    part_weights: torch.Tensor | None = None  # (N, D) PAM (or uniform) weights, part-based variants
    part_valid: torch.Tensor | None = None  # (N, D) bool: non-empty masks (a part counts by its mask)


def _to(batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    images = batch["image"].to(device, non_blocking=True)
    masks = batch.get("masks")
    return images, (masks.to(device, non_blocking=True) if masks is not None else None)


@torch.no_grad()
def extract_features(model: torch.nn.Module, loader: DataLoader, device: torch.device, flip: bool = False,
                     progress: bool = True, desc: str = "features") -> Features:
    model.eval()
    feats, pids, camids, weights, valid = [], [], [], [], []
    for batch in tqdm(loader, disable=not progress, desc=desc, leave=False):
        images, masks = _to(batch, device)
        extra = {"role_scores": batch["role_scores"].to(device)} if "role_scores" in batch else {}
        out = model(images, masks, **extra)
        emb = out.embedding.float()
        if out.part_weights is not None:
            weights.append(out.part_weights.float().cpu())
            valid.append(out.part_valid.cpu())
        if flip:
            fm = masks.flip(-1) if masks is not None else None
            emb = emb + model(images.flip(-1), fm, **extra).embedding.float()
        feats.append(torch.nn.functional.normalize(emb, dim=1).cpu())
        pids.append(batch["pid"].numpy())
        camids.append(batch["camid"].numpy())
    return Features(torch.cat(feats), np.concatenate(pids), np.concatenate(camids),
                    torch.cat(weights) if weights else None, torch.cat(valid) if valid else None)
