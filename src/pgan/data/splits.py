"""Seeded splits of records: the VehicleID query / gallery trials.

Lives in ``pgan.data`` (not in the metrics package) so the VehicleID reader can split its test list
without importing evaluation code; :mod:`pgan.evaluation.protocols` re-uses it for its trials.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pgan.data.records import ImageRecord
from pgan.errors import PganError

__all__ = ["vehicleid_trials"]


def vehicleid_trials(records: Sequence[ImageRecord] | np.ndarray, num_trials: int = 10,
                     seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """VehicleID splits: ``[(query_idx, gallery_idx), ...]``, one pair per trial.

    In each trial one image per identity (chosen with ``default_rng([seed, trial])``)
    forms the gallery; all other images are queries. Identities with a single
    image have no query. Indices are sorted. With records, images of an identity
    are taken in ``key`` order, so the split does not depend on the records'
    order; ``records`` may also be an array of identity labels (then it does).
    """
    if isinstance(records, np.ndarray):
        pids, keys = records.astype(np.int64), None
    else:
        pids, keys = np.array([r.pid for r in records], dtype=np.int64), np.array([r.key for r in records])
    if pids.ndim != 1 or len(pids) == 0:
        raise PganError("VehicleID trials need a non-empty list of records")
    if num_trials < 1:
        raise PganError(f"num_trials must be at least 1, got {num_trials}")
    order = np.argsort(pids, kind="stable") if keys is None else np.lexsort((keys, pids))
    _, starts, counts = np.unique(pids[order], return_index=True, return_counts=True)
    trials = []
    for trial in range(num_trials):
        rng = np.random.default_rng([seed, trial])
        gallery = np.sort(order[starts + rng.integers(0, counts)])
        is_query = np.ones(len(pids), dtype=bool)
        is_query[gallery] = False
        trials.append((np.flatnonzero(is_query), gallery))
    return trials
