"""The P x K sampler's epoch in the paper's unit: about every training image once."""

from __future__ import annotations

import numpy as np
import pytest

from pgan.data.sampler import IdentityBatchSampler, images_epoch_length
from pgan.errors import PganError

# VeRi-776's training split: 37,778 images of 576 identities (PGAN-NOTES.md); the per-identity
# counts here are a seeded spread with that total, as the real counts vary from 4 to a few hundred.
VERI_IMAGES, VERI_IDS = 37_778, 576


def veri_like_pids() -> np.ndarray:
    rng = np.random.default_rng(0)
    raw = rng.gamma(2.0, 1.0, VERI_IDS) + 0.2
    counts = np.maximum(4, np.floor(raw / raw.sum() * VERI_IMAGES)).astype(int)
    counts[: VERI_IMAGES - counts.sum()] += 1  # exactly 37,778
    assert counts.sum() == VERI_IMAGES
    return np.repeat(np.arange(VERI_IDS), counts)


def test_epoch_length_on_veri776_sized_data():
    pids = veri_like_pids()
    s = IdentityBatchSampler(pids, p=16, k=4, seed=0)
    counts = np.bincount(pids)
    expected = int(np.ceil(counts / 4).sum()) // 16
    assert len(s) == expected == images_epoch_length(counts, 16, 4)
    # About one pass over every image: 37,778 / 64 = 590 steps plus the last chunk of each identity
    # filled up to K; the old unit (each identity once) was 576 // 16 = 36 steps.
    assert 590 <= len(s) <= 610
    assert len(IdentityBatchSampler(pids, p=16, k=4, epoch="identities")) == 36
    batches = s.global_batches(0)
    assert len(batches) == len(s)
    used = {i for b in batches for i in b}
    assert len(used) / len(pids) > 0.99  # nearly every image seen in one epoch


def test_image_epoch_batches_are_pk_seeded_and_shardable():
    pids = np.repeat(np.arange(12), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    s = IdentityBatchSampler(pids, p=4, k=3, seed=5)
    batches = list(s)
    assert len(batches) == len(s) == sum(-(-n // 3) for n in np.bincount(pids)) // 4
    for b in batches:
        ids, counts = np.unique(pids[b], return_counts=True)
        assert len(ids) == 4 and (counts == 3).all()  # P distinct identities, K images each
    # Every image is used, except the fewer than P chunks left over when the chunk count is not a
    # multiple of P (34 chunks, 8 batches of 4 here): at most (P - 1) x K images.
    used = {i for b in batches for i in b}
    assert len(used) >= len(pids) - 3 * 3 and 11 in set(pids[list(used)])
    assert batches == list(IdentityBatchSampler(pids, p=4, k=3, seed=5))  # a pure function of the seed
    s.set_epoch(3)
    assert list(s) == IdentityBatchSampler(pids, p=4, k=3, seed=5).global_batches(3) != batches
    r0, r1 = (list(IdentityBatchSampler(pids, 4, 3, seed=5, world_size=2, rank=r)) for r in (0, 1))
    for full, a, b in zip(batches, r0, r1):
        assert a + b == full and not (set(pids[a]) & set(pids[b]))


def test_unknown_epoch_unit_is_refused():
    with pytest.raises(PganError, match="data.epoch"):
        IdentityBatchSampler(np.repeat(np.arange(4), 4), p=2, k=2, epoch="steps")


def test_mid_epoch_start_skips_the_batches_already_drawn():
    pids = np.repeat(np.arange(12), [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
    s = IdentityBatchSampler(pids, p=4, k=3, seed=5)
    full = s.global_batches(2)
    s.set_epoch(2, start=3)
    assert list(s) == full[3:] and len(s) == len(full) - 3 and s.steps_per_epoch == len(full)
    assert s.state_dict() == {"epoch": 2, "start": 3}
    other = IdentityBatchSampler(pids, p=4, k=3, seed=5)
    other.load_state_dict(s.state_dict())
    assert list(other) == full[3:]
    s.set_epoch(3)  # the next epoch starts at its first batch again
    assert list(s) == s.global_batches(3)
    with pytest.raises(PganError, match="cannot start epoch 2 at batch 99"):
        s.set_epoch(2, start=99)
