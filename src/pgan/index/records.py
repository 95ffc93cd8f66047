"""The SQLite side of a gallery index: the record (``index.sqlite``) and its row types.

``index.sqlite`` holds ``meta`` (key/value settings), ``items`` (one row per gallery image: metadata
only, never its vector), ``segments`` (the vector files a faiss index is made of, see
:mod:`pgan.index.segments`), ``tombstones`` (ids removed from the gallery whose vectors a segment still
holds) and ``log`` (files a build skipped). It runs in WAL mode so that readers (``pgan serve``, ``pgan
search``) see a writer's committed batches while it writes, without blocking it. Every write bumps the
meta ``generation``; a reader that sees another generation reloads what changed.

Example::

    conn = connect(Path("runs/gallery/index.sqlite"), readonly=True)
    conn.execute("SELECT COUNT(*) FROM items").fetchone()
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from pgan.errors import PganError

DB_NAME = "index.sqlite"
SCHEMA_VERSION = "2"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, camera INTEGER,
    vehicle_id INTEGER, timestamp TEXT, ts INTEGER, boxes TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS items_ts ON items (ts);
CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY, kind TEXT NOT NULL, rows INTEGER NOT NULL,
    first_id INTEGER NOT NULL, last_id INTEGER NOT NULL, index_type TEXT NOT NULL, params TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (id INTEGER PRIMARY KEY);
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
            conn = sqlite3.connect(db, check_same_thread=False, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise PganError(f"cannot read index database {db}: {exc}") from None
    return conn


def check_schema(db: Path, conn: sqlite3.Connection) -> None:
    """One line when ``db`` was written by an older pgan (schema 1 kept every vector inside ``items``)."""
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = row[0] if row else "1"
    if version != SCHEMA_VERSION:
        raise PganError(f"{db} has index format {version}; this pgan reads format {SCHEMA_VERSION} (vectors kept "
                        f"once, outside SQLite): rebuild it with 'pgan index build --images SRC --out NEW'")


def generation(conn: sqlite3.Connection) -> int:
    """The meta ``generation``: bumped by every write (rows, segments, tombstones)."""
    row = conn.execute("SELECT value FROM meta WHERE key='generation'").fetchone()
    return int(row[0]) if row else 0


def bump(conn: sqlite3.Connection) -> None:
    """Inside a write transaction: mark it as a new generation for readers."""
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('generation', ?)", (str(generation(conn) + 1),))


def allocate_ids(conn: sqlite3.Connection, n: int) -> int:
    """Inside a write transaction: the first of ``n`` new ids (never reused, even after a removal)."""
    row = conn.execute("SELECT value FROM meta WHERE key='next_id'").fetchone()
    start = int(row[0]) if row else 0
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('next_id', ?)", (str(start + n),))
    return start


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken with ``BEGIN IMMEDIATE`` (concurrent writers queue for the lock, up to
    the connection's timeout, instead of failing half way); rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


NO_TIME = -(2**63)  # the ts column of items without a (readable) timestamp
_DIGITS = re.compile(r"^\s*\d{1,18}\s*$")


def time_value(text: str | None) -> int | None:
    """The number a timestamp compares by: digits (a VeRi name's ``00030640``, a frame number) as that
    integer; an ISO 8601 time (``2024-05-01T08:00:00``, naive = UTC) as Unix seconds; None otherwise."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if _DIGITS.match(text):
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def parse_time(text: str, name: str) -> int:
    """:func:`time_value` of a user's time bound (``--since`` ...), or one line naming ``name``."""
    value = time_value(text)
    if value is None:
        raise PganError(f"{name} {text!r} is not a time: give digits (00030640) or ISO 8601 (2024-05-01T08:00)")
    return value
