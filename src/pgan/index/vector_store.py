"""The seam between a gallery index's record (SQLite) and the engine that searches its vectors.

``index.sqlite`` is the record of a gallery index: every row, its metadata and its vector
(:mod:`pgan.index.records`). A :class:`VectorStore` holds a searchable copy of the vectors, derived from
the record and brought up to date by :meth:`VectorStore.finalize`. Two stores exist:

* ``faiss`` (the default): ``vectors.faiss`` beside the database (:mod:`pgan.index.vectors`);
* ``milvus``: a collection in Milvus Lite (a local ``.db`` path) or a Milvus server (``http://host:19530``)
  (:mod:`pgan.index.milvus`).

:class:`pgan.index.store.GalleryIndex` picks the store the index records (meta ``backend``) and talks to
it only through this interface, so searching, adding and serving do not depend on the backend.

Example::

    where = SearchFilter(camera=3, since="00030000")
    where.accepts(3, "00030640")  # True
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

__all__ = ["BACKENDS", "Record", "SearchFilter", "VectorStore"]

BACKENDS = ("faiss", "milvus")


@dataclass(frozen=True)
class SearchFilter:
    """Which gallery items a search may return.

    ``camera``: only that camera; ``exclude_camera``: not that one (items without a camera pass);
    ``since`` / ``until``: a time window on the item's timestamp, both ends included. Timestamps are text
    (a VeRi name's 8 digits, a CSV column) and compare as text, so give them in one fixed-width form
    (``00030640``, ISO 8601); with a window, items without a timestamp are left out."""

    camera: int | None = None
    exclude_camera: int | None = None
    since: str | None = None
    until: str | None = None

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.camera, self.exclude_camera, self.since, self.until))

    @property
    def timed(self) -> bool:
        return self.since is not None or self.until is not None

    def accepts(self, camera: int | None, timestamp: str | None) -> bool:
        if self.camera is not None and camera != self.camera:
            return False
        if self.exclude_camera is not None and camera == self.exclude_camera:
            return False
        if self.timed and timestamp is None:
            return False
        if self.since is not None and timestamp < self.since:
            return False
        return self.until is None or timestamp <= self.until


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

    def vectors(self, after_id: int = -1) -> tuple[np.ndarray, np.ndarray]: ...

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
    def status(self) -> tuple[int, str | None]:
        """``(searchable rows, why the store does not match the record or None)``, for ``index info``."""

    def check(self) -> None:  # noqa: B027 (optional hook)
        """Fail early (one line) when the store cannot take this index's vectors (a resumed build)."""

    def describe(self) -> dict:
        """Backend settings for ``index info`` (where the vectors live)."""
        return {"backend": self.backend}

    def forget(self) -> None:  # noqa: B027 (optional hook)
        """Drop caches of item metadata (the record gained rows)."""

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release connections."""
