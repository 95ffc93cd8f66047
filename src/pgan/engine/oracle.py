"""Role scores for the ``oracle`` variant: part weights from ground-truth roles instead of the PAM.

The oracle asks what ideal attention would give on a benchmark: each selected part is scored by
the role of the ground-truth part it is (:func:`pgan.parts.roles.selection_roles`, the same rule the
attention ratio uses): identity 1, shared 0, clutter or unknown -1. The network turns the scores
into weights with a fixed softmax over the image's valid parts, ``softmax(T_o * s)``
(``model.oracle_temperature``, default 1: an identity part gets e = 2.7 times a shared part's weight
and e^2 = 7.4 times a clutter part's). If the oracle does not beat equal weights (``nopam``), no
PAM can, and the benchmark needs changing (issue 18).

Scores are a pure function of the part source and the ground-truth file, computed once per split
and handed to :class:`pgan.data.image_dataset.ReidImageDataset`, which yields them beside the masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgan.errors import PganError
from pgan.parts.roles import selection_roles
from pgan.parts.selection import select_top_d
from pgan.parts.sources import PartSource

ROLE_SCORES: dict[str, float] = {"identity": 1.0, "shared": 0.0}
OTHER_SCORE = -1.0  # clutter, or a part of unknown role


def role_scores(roles: Sequence[str | None], d: int) -> np.ndarray:
    """``(d,)`` float32 scores of an image's selected parts in slot order (padding slots: 0, unused).

    Example: ``role_scores(["identity", "shared", "clutter"], 4) -> [1, 0, -1, 0]``.
    """
    out = np.zeros(d, dtype=np.float32)
    for i, role in enumerate(list(roles)[:d]):
        out[i] = ROLE_SCORES.get(role, OTHER_SCORE) if role is not None else OTHER_SCORE
    return out


def role_score_table(keys: Sequence[str], parts: PartSource | None, num_parts: int,
                     truth_file: str | Path) -> dict[str, np.ndarray]:
    """Scores of the top-``num_parts`` parts of every image in ``keys`` (part-file keys), by the roles
    in ``truth_file`` (the dataset's ``parts_gt.jsonl``)."""
    if parts is None or not hasattr(parts, "boxes_for"):
        raise PganError("model.variant=oracle needs a box part source (data.part_source file, detector, "
                        "proposals, dff or kmeans) on a dataset with ground-truth roles")
    if not Path(truth_file).is_file():
        raise PganError(f"model.variant=oracle needs ground-truth part roles; {truth_file} does not exist")
    selected = []
    for key in keys:
        item = parts.boxes_for(key)
        selected.append(select_top_d(item.boxes, num_parts) if item is not None else [])
    roles, _ = selection_roles(selected, list(keys), truth_file)
    if not any(r is not None for rs in roles for r in rs):
        raise PganError(f"model.variant=oracle: {truth_file} gives no part a role (identity / shared)")
    return {key: role_scores(rs, num_parts) for key, rs in zip(keys, roles)}
