"""The sightings view of ``POST /api/search`` (``group=camera``): its form fields and its answer.

The grouping itself is :func:`pgan.index.sightings.group_sightings`; here are only the HTTP side's
checks (one-line 422s) and the answer's JSON (the fields of ``SightingsView`` in :mod:`pgan.serve.schemas`),
built from the results' dicts (:func:`pgan.serve.responses.hit_json`).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException

from pgan.index.sightings import DEFAULT_MIN_SCORE, group_sightings

__all__ = ["DEFAULT_MIN_SCORE", "parse_group", "sightings_view"]


def parse_group(group: str | None, min_score: str | None) -> float | None:
    """The ``min_score`` of the sightings a search asked for with ``group=camera`` (the default when the
    field is empty); None when it asked for none. Any other ``group``, or a ``min_score`` that is not a
    number in -1..1 or comes without ``group=camera``, is a 422."""
    group = (group or "").strip()
    if group not in ("", "camera"):
        raise HTTPException(422, f"group must be 'camera' (sightings by camera in time order), got {group[:40]!r}")
    raw = (min_score or "").strip()
    if not group:
        if raw:
            raise HTTPException(422, "min_score applies to the sightings only: send it with group=camera")
        return None
    try:
        value = float(raw) if raw else DEFAULT_MIN_SCORE
    except ValueError:
        raise HTTPException(422, f"min_score must be a number, got {raw[:40]!r}") from None
    if not -1.0 <= value <= 1.0:  # also refuses nan
        raise HTTPException(422, f"min_score must be between -1 and 1 (a cosine similarity), got {raw[:40]}")
    return value


class _Ranked:
    """A result dict read as grouping reads a hit (attributes ``rank``, ``score``, ``camera``, ``timestamp``)."""

    __slots__ = ("rank", "score", "camera", "timestamp", "body")

    def __init__(self, body: dict) -> None:
        self.rank, self.score, self.camera, self.timestamp = body["rank"], body["score"], body["camera"], \
            body["timestamp"]
        self.body = body


def sightings_view(results: list[dict], min_score: float) -> dict:
    """The ranked ``results`` (dicts of ``Result`` fields) grouped by camera in time order, those under
    ``min_score`` left out, as the ``sightings`` of the answer."""
    s = group_sightings([_Ranked(r) for r in results], min_score)
    return {"min_score": float(min_score), "below_min_score": s.below_min_score, "cameras": [
        {"camera": c.camera, "count": len(c.hits), "best_score": float(c.best_score), "first_seen": c.first_seen,
         "last_seen": c.last_seen, "results": [h.body for h in c.hits]} for c in s.cameras]}
