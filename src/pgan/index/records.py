"""The SQLite side of a gallery index: the record (``index.sqlite``) and its row types.

``index.sqlite`` holds ``meta`` (key/value settings), ``items`` (one row per gallery image, with its
float32 vector) and ``log`` (files a build skipped). It runs in WAL mode so that readers (``pgan
serve``, ``pgan search``) see a writer's committed batches while it writes, without blocking it.

Example::

    conn = connect(Path("runs/gallery/index.sqlite"), readonly=True)
    conn.execute("SELECT COUNT(*) FROM items").fetchone()
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pgan.errors import PganError

DB_NAME = "index.sqlite"
SCHEMA_VERSION = "1"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, camera INTEGER,
    vehicle_id INTEGER, timestamp TEXT, boxes TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (path TEXT PRIMARY KEY, reason TEXT NOT NULL, logged_at TEXT NOT NULL);
"""
ITEM_COLUMNS = "id, path, camera, vehicle_id, timestamp, boxes"


@dataclass
class Hit:
    """One search result (or one gallery item, with ``rank=0`` and ``score=0``)."""

    rank: int  # 1-based
    score: float  # cosine similarity
    image_id: int
    path: str
    camera: int | None = None
    vehicle_id: int | None = None
    timestamp: str | None = None
    boxes: list[list[float]] = field(default_factory=list)  # part boxes [x1, y1, x2, y2], image pixels

    def to_dict(self) -> dict:
        return asdict(self)


def hit_from_row(row: tuple, rank: int = 0, score: float = 0.0) -> Hit:
    """The :class:`Hit` of an ``items`` row selected as :data:`ITEM_COLUMNS`."""
    return Hit(rank, score, int(row[0]), row[1], row[2], row[3], row[4], json.loads(row[5]))


@dataclass
class GalleryItem:
    """What :meth:`GalleryIndex.add_batch` stores for one image (its id is assigned there)."""

    path: str
    camera: int | None = None
    vehicle_id: int | None = None
    timestamp: str | None = None
    boxes: list[list[float]] = field(default_factory=list)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def connect(db: Path, readonly: bool, create: bool = False) -> sqlite3.Connection:
    """A connection to ``db``. Read-only uses a ``file:`` URI built by :meth:`Path.as_uri`, which
    percent-escapes every special character (``#``, ``?``, ``%``, spaces); read-write uses the plain path.
    Writers switch the file to WAL mode (it persists in the file)."""
    if not create and not db.is_file():
        raise PganError(f"{db.parent} is not a gallery index (no {DB_NAME}; build one with 'pgan index build')")
    try:
        if readonly:
            conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False,
                                   timeout=30)
        else:
            conn = sqlite3.connect(db, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise PganError(f"cannot read index database {db}: {exc}") from None
    return conn


def rows_up_to(conn: sqlite3.Connection, max_id: int) -> int:
    """How many items have an id <= ``max_id`` (ids are append-only, so a faiss file holding that many
    rows up to that id holds exactly these)."""
    return int(conn.execute("SELECT COUNT(*) FROM items WHERE id<=?", (int(max_id),)).fetchone()[0])
