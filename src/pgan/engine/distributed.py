"""Multi-GPU / multi-node training on torch.distributed (launched with ``torchrun``).

``torchrun --nproc_per_node N -m pgan train ...`` sets RANK / WORLD_SIZE /
LOCAL_RANK; :func:`init_distributed` reads them, picks NCCL on CUDA and gloo on
CPU, and pins each process to its GPU.

Batch and learning-rate rule: ``data.p x data.k`` is the GLOBAL batch. Each of
the N processes takes ``p / N`` identities of every global batch, so one step
sees exactly the batch a single process would; the learning rate therefore
needs no change when N changes. Batch-hard triplet mining gathers the features
of all ranks, so it mines over the global batch as a single process would. If
you enlarge the global batch, scale ``optim.lr`` yourself (linearly is the
usual rule).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from pgan.errors import PganError

__all__ = ["DistInfo", "barrier", "cleanup", "env_dist_info", "gather_for_mining", "init_distributed"]


@dataclass(frozen=True)
class DistInfo:
    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_dist_info() -> DistInfo:
    """What torchrun's environment says (world size 1 outside torchrun)."""
    try:
        return DistInfo(int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0)),
                        int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError:
        raise PganError("WORLD_SIZE / RANK / LOCAL_RANK must be integers (set by torchrun)") from None


def init_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; returns (info, this process's device)."""
    info = env_dist_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        if torch.cuda.device_count() <= info.local_rank:
            raise PganError(f"LOCAL_RANK={info.local_rank} but only {torch.cuda.device_count()} GPUs are visible")
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(minutes=30))
    return info, device


def gather_for_mining(feats: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' features (with gradient flowing back to each rank's own part) and labels.

    Every rank then computes the same global-batch triplet loss; the all-gather's
    backward sums the gradient copies and DDP's averaging divides them again, so
    parameters receive exactly the single-process gradient.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return feats, labels
    from torch.distributed.nn.functional import all_gather

    all_feats = torch.cat(all_gather(feats), dim=0)
    label_list = [torch.empty_like(labels) for _ in range(dist.get_world_size())]
    dist.all_gather(label_list, labels)
    return all_feats, torch.cat(label_list, dim=0)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
