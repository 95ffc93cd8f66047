"""Identity-balanced P x K batch sampler (seeded, resumable, shardable across ranks).

Each global batch holds ``P`` distinct identities with ``K`` images each. Under
distributed training every rank takes ``P / world_size`` of the global batch's
identities, so no identity repeats within a global step and the union over
ranks equals the single-process batch.

What an *epoch* is (``epoch``):

* ``"images"`` (default, the paper's unit): about one pass over every training
  image, as the bag-of-tricks sampler the authors' code builds on does. Each
  identity's images are shuffled and cut into chunks of ``K`` (the last chunk is
  filled up with other images of the same identity, so every image is used); an
  epoch draws ``sum_i ceil(n_i / K) // P`` batches, each of ``P`` identities that
  still have chunks left, drawn with probability proportional to how many they
  have left (so no identity is left over at the end). On VeRi-776 (37,778 images,
  576 identities, P x K = 16 x 4) that is about 600 steps.
* ``"identities"``: each identity once per epoch, ``num_ids // P`` batches of one
  random chunk each (pgan before 0.2; VeRi-776: 36 steps). Kept so older
  figures can be reproduced.

Everything is a pure function of ``(seed, epoch)``, so an interrupted run resumes exactly: at an
epoch boundary, or inside an epoch with ``set_epoch(epoch, start)``, which skips the ``start``
batches the interrupted run already drew (the epoch's batches are the same; iteration begins later).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np

from pgan.errors import PganError

__all__ = ["EPOCH_UNITS", "IdentityBatchSampler", "images_epoch_length"]

EPOCH_UNITS = ("images", "identities")


def images_epoch_length(counts: Sequence[int], p: int, k: int) -> int:
    """Steps per ``"images"`` epoch for identities with ``counts`` images each."""
    return sum(-(-int(n) // k) for n in counts) // p


class IdentityBatchSampler:
    def __init__(self, pids: Sequence[int], p: int = 16, k: int = 4, seed: int = 0,
                 world_size: int = 1, rank: int = 0, epoch: str = "images") -> None:
        if p < 2 or k < 1:
            raise PganError(f"sampler needs P >= 2 and K >= 1, got P={p} K={k}")
        if p % world_size:
            raise PganError(f"P={p} identities per batch is not divisible by world size {world_size}")
        if epoch not in EPOCH_UNITS:
            raise PganError(f"data.epoch={epoch!r} must be one of {', '.join(EPOCH_UNITS)}")
        self.by_pid: dict[int, list[int]] = defaultdict(list)
        for i, pid in enumerate(pids):
            self.by_pid[int(pid)].append(i)
        if len(self.by_pid) < p:
            raise PganError(f"P={p} identities per batch but the training set has only {len(self.by_pid)}")
        self.pid_list = sorted(self.by_pid)
        self.p, self.k, self.seed = p, k, seed
        self.world_size, self.rank = world_size, rank
        self.unit = epoch
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on (``start > 0``: a mid-epoch resume)."""
        if not 0 <= start <= self.steps_per_epoch:
            raise PganError(f"cannot start epoch {epoch} at batch {start}: it has {self.steps_per_epoch} batches")
        self.epoch, self.start = epoch, start

    def state_dict(self) -> dict[str, int]:
        """Where iteration stands: the epoch and the batches of it already drawn (for checkpoints)."""
        return {"epoch": self.epoch, "start": self.start}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.set_epoch(int(state["epoch"]), int(state.get("start", 0)))

    def __len__(self) -> int:
        """Batches the next iteration yields (a full epoch unless it starts mid-epoch)."""
        return self.steps_per_epoch - self.start

    @property
    def steps_per_epoch(self) -> int:
        """Batches in a full epoch."""
        if self.unit == "identities":
            return len(self.pid_list) // self.p
        return images_epoch_length([len(self.by_pid[pid]) for pid in self.pid_list], self.p, self.k)

    def _chunks(self, rng: np.random.Generator, idxs: list[int]) -> list[list[int]]:
        """An identity's images shuffled into chunks of K; the last one filled up from the others."""
        order = [idxs[t] for t in rng.permutation(len(idxs))]
        short = -len(order) % self.k
        if short:
            order += [idxs[t] for t in rng.choice(len(idxs), size=short, replace=len(idxs) < short)]
        return [order[i:i + self.k] for i in range(0, len(order), self.k)]

    def _identity_batches(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(len(self.pid_list))
        batches = []
        for b in range(self.steps_per_epoch):
            batch = []
            for j in order[b * self.p:(b + 1) * self.p]:
                idxs = self.by_pid[self.pid_list[j]]
                pick = rng.choice(len(idxs), size=self.k, replace=len(idxs) < self.k)
                batch.extend(idxs[t] for t in pick)
            batches.append(batch)
        return batches

    def _image_batches(self, rng: np.random.Generator) -> list[list[int]]:
        chunks = [self._chunks(rng, self.by_pid[pid]) for pid in self.pid_list]
        left = np.array([len(c) for c in chunks], dtype=np.float64)
        batches = []
        for _ in range(self.steps_per_epoch):
            avail = np.flatnonzero(left > 0)
            if len(avail) >= self.p:
                picked = rng.choice(avail, size=self.p, replace=False, p=left[avail] / left[avail].sum())
            else:  # rare end-of-epoch case: top up with identities whose chunks are used up
                others = np.setdiff1d(np.arange(len(chunks)), avail)
                picked = np.concatenate([avail, rng.choice(others, self.p - len(avail), replace=False)])
            batch = []
            for j in picked:
                if left[j] > 0:
                    left[j] -= 1
                    batch.extend(chunks[j][int(left[j])])
                else:  # a fresh chunk of an identity already used up this epoch
                    batch.extend(self._chunks(rng, self.by_pid[self.pid_list[j]])[0])
            batches.append(batch)
        return batches

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All global batches of an epoch (a pure function of seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch])
        return self._identity_batches(rng) if self.unit == "identities" else self._image_batches(rng)

    def __iter__(self) -> Iterator[list[int]]:
        share = self.p // self.world_size * self.k
        for batch in self.global_batches(self.epoch)[self.start:]:
            yield batch[self.rank * share:(self.rank + 1) * share]
