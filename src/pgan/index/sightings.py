"""Sightings: one query's ranked matches regrouped as where and when the vehicle was seen.

:func:`group_sightings` keeps the matches scoring at least ``min_score`` (a sighting should be a
likely match, not the tail of the top-k), groups them by camera, and orders:

* **within a camera**, by timestamp (earliest first); matches without a timestamp come after the
  timed ones, by rank. Timestamps are the gallery's strings (VeRi names give ``00030640``; a CSV
  gives whatever its ``timestamp`` column holds): those that read as numbers compare as numbers,
  the others as text (so ISO 8601 times in one format sort correctly), numbers before text;
* **the cameras**, by their best score (highest first), ties by camera id, the unknown camera
  (``None``) last. Best score rather than first sighting time, because timestamps are often missing
  and need not be comparable across cameras (unsynchronised clocks, per-camera frame numbers);
  each group's ``first_seen`` / ``last_seen`` still give its time span.

Scores are cosine similarities. :data:`DEFAULT_MIN_SCORE` (0.5) is a round cut, not calibrated on a
dataset: how high a true match scores depends on the model, so set ``min_score`` from the scores of
known matches under yours; ``None`` keeps every hit.

Example::

    hits = index.search(fx(["query.jpg"]), topk=50)[0]
    for cam in group_sightings(hits, min_score=0.6).cameras:
        print(cam.camera, cam.first_seen, cam.last_seen, [h.image_id for h in cam.hits])
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["DEFAULT_MIN_SCORE", "CameraSightings", "RankedHit", "Sightings", "group_sightings", "timestamp_key"]

DEFAULT_MIN_SCORE = 0.5


class RankedHit(Protocol):
    """What grouping reads of a hit (:class:`pgan.index.Hit`, the service's ``Result``, ...)."""

    @property
    def rank(self) -> int: ...

    @property
    def score(self) -> float: ...

    @property
    def camera(self) -> Any: ...

    @property
    def timestamp(self) -> Any: ...


H = TypeVar("H", bound=RankedHit)


@dataclass
class CameraSightings(Generic[H]):
    """The sightings of one camera: its hits in time order (untimed ones last, by rank)."""

    camera: Any  # the gallery's camera id; None: hits whose camera is not known
    hits: list[H]
    best_score: float
    first_seen: str | None  # the earliest timestamp among the hits; None when none has one
    last_seen: str | None


@dataclass
class Sightings(Generic[H]):
    """:func:`group_sightings`'s answer: the cameras, best first, and what the threshold left out."""

    cameras: list[CameraSightings[H]]
    min_score: float | None
    below_min_score: int  # hits of the ranked list scoring under min_score (not sightings)

    def to_dict(self) -> dict:
        """JSON-ready form; hits that are dataclasses (:class:`pgan.index.Hit`) become dicts."""
        return {"min_score": self.min_score, "below_min_score": self.below_min_score,
                "cameras": [{"camera": c.camera, "count": len(c.hits), "best_score": c.best_score,
                             "first_seen": c.first_seen, "last_seen": c.last_seen,
                             "hits": [asdict(h) if is_dataclass(h) else h for h in c.hits]}
                            for c in self.cameras]}


def timestamp_key(timestamp: Any) -> tuple[int, float, str] | None:
    """The sort key of a gallery timestamp, or None when there is none (None, empty or blank).

    ``"00030640"`` and ``30640`` sort as the number 30640; other text sorts as text, after numbers.
    """
    if timestamp is None:
        return None
    if isinstance(timestamp, (int, float)) and not isinstance(timestamp, bool) and math.isfinite(timestamp):
        return (0, float(timestamp), str(timestamp))
    text = str(timestamp).strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return (1, 0.0, text)
    return (0, value, text) if math.isfinite(value) else (1, 0.0, text)


def _camera_order(camera: Any) -> tuple:
    if camera is None:
        return (2, 0, "")
    if isinstance(camera, int) and not isinstance(camera, bool):
        return (0, camera, "")
    return (1, 0, str(camera))


def group_sightings(hits: Iterable[H], min_score: float | None = DEFAULT_MIN_SCORE) -> Sightings[H]:
    """Group ranked ``hits`` (any objects with ``rank``, ``score``, ``camera``, ``timestamp``) by camera,
    keeping those with ``score >= min_score`` (``None``: all); orders as the module docstring says."""
    if min_score is not None and not math.isfinite(min_score):
        raise ValueError(f"min_score must be a finite number or None, got {min_score!r}")
    by_camera: dict[Any, list[H]] = {}
    below = 0
    for hit in hits:
        if min_score is not None and hit.score < min_score:
            below += 1
            continue
        by_camera.setdefault(hit.camera, []).append(hit)
    groups = []
    for camera, members in by_camera.items():
        timed = sorted(((timestamp_key(h.timestamp), h) for h in members if timestamp_key(h.timestamp)),
                       key=lambda kh: (kh[0], kh[1].rank))
        untimed = sorted((h for h in members if timestamp_key(h.timestamp) is None), key=lambda h: h.rank)
        groups.append(CameraSightings(
            camera=camera, hits=[h for _, h in timed] + untimed, best_score=max(float(h.score) for h in members),
            first_seen=timed[0][0][2] if timed else None, last_seen=timed[-1][0][2] if timed else None))
    groups.sort(key=lambda g: (-g.best_score, _camera_order(g.camera)))
    return Sightings(groups, min_score, below)
