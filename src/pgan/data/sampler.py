"""Identity-balanced P x K batch sampler (seeded, resumable, shardable across ranks).

Each global batch holds ``P`` distinct identities with ``K`` images each. Under
distributed training every rank takes ``P / world_size`` of the global batch's
identities, so no identity repeats within a global step and the union over
ranks equals the single-process batch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from pgan.errors import PganError


class IdentityBatchSampler:
    def __init__(self, pids: Sequence[int], p: int = 16, k: int = 4, seed: int = 0,
                 world_size: int = 1, rank: int = 0) -> None:
        if p < 2 or k < 1:
            raise PganError(f"sampler needs P >= 2 and K >= 1, got P={p} K={k}")
        if p % world_size:
            raise PganError(f"P={p} identities per batch is not divisible by world size {world_size}")
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.by_pid[int(pid)].append(i)
        if len(self.by_pid) < p:
            raise PganError(f"P={p} identities per batch but the training set has only {len(self.by_pid)}")
        self.pid_list = sorted(self.by_pid)
        self.p, self.k, self.seed = p, k, seed
        self.world_size, self.rank = world_size, rank
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.pid_list) // self.p

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All global batches of an epoch (a pure function of seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.pid_list))
        batches = []
        for b in range(len(self)):
            batch = []
            for j in order[b * self.p:(b + 1) * self.p]:
                idxs = self.by_pid[self.pid_list[j]]
                pick = rng.choice(len(idxs), size=self.k, replace=len(idxs) < self.k)
                batch.extend(idxs[t] for t in pick)
            batches.append(batch)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        share = self.p // self.world_size * self.k
        for batch in self.global_batches(self.epoch):
            yield batch[self.rank * share:(self.rank + 1) * share]
