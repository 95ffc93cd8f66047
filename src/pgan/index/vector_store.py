"""The seam between a gallery index's record (SQLite) and the engine that searches its vectors.

``index.sqlite`` holds every item's metadata (:mod:`pgan.index.records`), never its vector. A
:class:`VectorStore` holds the one copy of the vectors: :meth:`VectorStore.add` stores a batch in the
same transaction that commits its rows, :meth:`VectorStore.remove` makes items unsearchable, and
:meth:`VectorStore.finalize` reorganises what was added for fast search. Two stores exist:

* ``faiss`` (the default): segment files beside the database (:mod:`pgan.index.vectors`,
  :mod:`pgan.index.segments`);
* ``milvus``: a collection in Milvus Lite (a local ``.db`` path) or a Milvus server (``http://host:19530``)
  (:mod:`pgan.index.milvus`).

:class:`pgan.index.store.GalleryIndex` picks the store the index records (meta ``backend``) and talks to
it only through this interface, so searching, adding and serving do not depend on the backend.

Example::

    where = SearchFilter.parse(camera=3, since="00030000")
    where.accepts(3, "00030640")  # True
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from pgan.errors import IndexMismatchError, PganError
from pgan.index.records import parse_time, time_value

__all__ = ["BACKENDS", "Record", "SearchFilter", "VectorStore", "check_queries"]

BACKENDS = ("faiss", "milvus")


@dataclass(frozen=True)
class SearchFilter:
    """Which gallery items a search may return; every backend applies it inside the engine.

    ``camera``: only that camera; ``exclude_camera``: not that one (items without a camera pass);
    ``vehicle_id``: only that vehicle; ``since`` / ``until``: a time window on the item's timestamp, both
    ends included, as the numbers :func:`pgan.index.records.time_value` reads (digits such as a VeRi
    name's ``00030640`` as integers, ISO 8601 as Unix seconds); with a window, items without a timestamp
    are left out. Build one from user text with :meth:`parse` (one line for a malformed time)."""

    camera: int | None = None
    exclude_camera: int | None = None
    since: int | None = None
    until: int | None = None
    vehicle_id: int | None = None

    @classmethod
    def parse(cls, camera: int | None = None, exclude_camera: int | None = None, since: str | int | None = None,
              until: str | int | None = None, vehicle_id: int | None = None) -> SearchFilter:
        def bound(value, name):
            if value is None or isinstance(value, int):
                return value
            return parse_time(str(value), name)

        where = cls(camera, exclude_camera, bound(since, "since"), bound(until, "until"), vehicle_id)
        if where.since is not None and where.until is not None and where.since > where.until:
            raise PganError(f"the time window is empty: since {since!r} is after until {until!r}")
        return where

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.camera, self.exclude_camera, self.since, self.until,
                                           self.vehicle_id))

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def accepts(self, camera: int | None, timestamp: str | int | None, vehicle_id: int | None = None) -> bool:
        """Whether one item passes (``timestamp``: its text or its number)."""
        if self.camera is not None and camera != self.camera:
            return False
        if self.exclude_camera is not None and camera == self.exclude_camera:
            return False
        if self.vehicle_id is not None and vehicle_id != self.vehicle_id:
            return False
        ts = timestamp if isinstance(timestamp, int) else time_value(timestamp)
        if self.timed and ts is None:
            return False
        if self.since is not None and ts < self.since:
            return False
        return self.until is None or ts <= self.until

    def mask(self, camera: np.ndarray, vehicle_id: np.ndarray, ts: np.ndarray, missing: int) -> np.ndarray | None:
        """The rows of these columns that pass (None: all of them); ``missing`` marks an unknown value."""
        keep = None

        def both(a, b):
            return b if a is None else a & b

        if self.camera is not None:
            keep = both(keep, camera == self.camera)
        if self.exclude_camera is not None:
            keep = both(keep, camera != self.exclude_camera)
        if self.vehicle_id is not None:
            keep = both(keep, vehicle_id == self.vehicle_id)
        if self.timed:
            keep = both(keep, ts != missing)
        if self.since is not None:
            keep = both(keep, ts >= self.since)
        if self.until is not None:
            keep = both(keep, ts <= self.until)
        return keep


class Record(Protocol):
    """What a vector store reads of the index it serves (:class:`pgan.index.store.GalleryIndex`)."""

    path: Path
    conn: sqlite3.Connection
    meta: dict[str, str]
    params: dict
    readonly: bool
    auto_refresh: bool

    @property
    def dim(self) -> int: ...

    @property
    def index_type(self) -> str: ...

    @property
    def model_fingerprint(self) -> str: ...

    @property
    def build_id(self) -> str: ...

    def __len__(self) -> int: ...

    def set_meta(self, **values: str) -> None: ...


class VectorStore(ABC):
    """The searchable vectors of one index, derived from its record.

    Scores are inner products of L2-normalised embeddings (cosine similarity), best first; ids are
    the record's item ids."""

    backend: ClassVar[str]

    @abstractmethod
    def finalize(self) -> int:
        """Bring the store up to date with the record (a writer, at the end of a build or add); returns
        how many vectors it holds."""

    @abstractmethod
    def refresh(self, wait: bool = True) -> bool:
        """Pick up what a writer published since the last look; True when searches now see more."""

    @abstractmethod
    def searchable(self) -> int:
        """How many items searches can return now."""

    @abstractmethod
    def search(self, queries: np.ndarray, k: int, where: SearchFilter) -> list[list[tuple[float, int]]]:
        """``(score, id)`` of the (up to) ``k`` best items passing ``where``, per query row, best first."""

    @abstractmethod
    def add(self, ids: list[int], vectors: np.ndarray, items: list) -> None:
        """Store the vectors of new items, inside the record's open write transaction (a failure rolls the
        rows back too)."""

    @abstractmethod
    def remove(self, ids: list[int]) -> None:
        """Make ``ids`` unsearchable, inside the record's open write transaction."""

    @abstractmethod
    def vector(self, image_id: int) -> np.ndarray:
        """The stored ``(d,)`` vector of one item (:class:`KeyError` when it has none)."""

    @abstractmethod
    def status(self) -> tuple[int, str | None]:
        """``(searchable rows, why the store does not match the record or None)``, for ``index info``."""

    def check(self) -> None:  # noqa: B027 (optional hook)
        """Fail early (one line) when the store cannot take this index's vectors (a resumed build)."""

    def describe(self) -> dict:
        """Backend settings for ``index info`` (where the vectors live)."""
        return {"backend": self.backend}

    def stale(self) -> bool:
        """True when writers committed something this process has not loaded yet."""
        return False

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections."""


def check_queries(embeddings: np.ndarray, dim: int, topk: int, index_name: object) -> np.ndarray:
    """The query ``embeddings`` as a contiguous float32 ``(N, dim)`` array, every gallery's search checks in
    one place: the width must be the index's ``dim`` (:class:`IndexMismatchError` naming ``index_name``) and
    ``topk`` at least 1."""
    emb = np.ascontiguousarray(np.atleast_2d(embeddings), dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] != dim:
        raise IndexMismatchError(f"index {index_name} holds {dim}-d embeddings; the queries are {emb.shape[-1]}-d")
    if topk < 1:
        raise PganError(f"topk must be >= 1, got {topk}")
    return emb
