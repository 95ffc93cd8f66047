"""Writing to a gallery index folder: adding a batch and removing items, each one ``BEGIN IMMEDIATE``
transaction (:func:`pgan.index.records.write`), so any number of processes can write at once.
:class:`pgan.index.store.GalleryIndex` calls these; the library form of ``pgan index remove`` is
:func:`pgan.index.build.remove_from_index`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pgan.errors import IndexMismatchError, PganError
from pgan.index import records
from pgan.index.records import GalleryItem

if TYPE_CHECKING:
    from pgan.index.store import GalleryIndex

__all__ = ["add_batch", "remove"]


def add_batch(index: GalleryIndex, items: list[GalleryItem], vectors: np.ndarray,
              skipped: list[tuple[str, str]] = ()) -> list[int]:
    """Store one batch (rows, vectors, skipped files) in one transaction; returns the new ids.

    Paths the index holds already (another writer added them meanwhile) are left as they are."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.shape != (len(items), index.dim):
        raise IndexMismatchError(f"expected {len(items)} x {index.dim} vectors, got {vectors.shape}")
    store = index.vector_store
    with records.write(index.conn):
        held = {r[0] for r in index.conn.execute(
            f"SELECT path FROM items WHERE path IN ({','.join('?' * len(items))})", [it.path for it in items])}
        fresh = []
        for j, it in enumerate(items):
            if it.path not in held:
                held.add(it.path)
                fresh.append(j)
        items, vectors = [items[j] for j in fresh], vectors[fresh]
        start = records.allocate_ids(index.conn, len(items))
        ids = list(range(start, start + len(items)))
        index.conn.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(i, it.path, it.camera, it.vehicle_id, it.timestamp, records.time_value(it.timestamp),
              json.dumps(it.boxes)) for i, it in zip(ids, items)])
        store.add(ids, vectors, items)
        index.conn.executemany("DELETE FROM log WHERE path=?", [(it.path,) for it in items])
        index.conn.executemany("INSERT OR REPLACE INTO log VALUES (?, ?, ?)",
                              [(p, r, records.now()) for p, r in skipped])
        records.bump(index.conn)
    return ids


def remove(index: GalleryIndex, paths: list[str] = (), ids: list[int] = (),
           before: str | None = None) -> list[int]:
    """Remove items from the gallery: by ``paths`` (as given to build / add), by ``ids``, and every item
    whose timestamp lies before ``before``; returns the ids removed. Searches never return them again
    (in any process). An unknown path or id raises (one line) and removes nothing."""
    wanted: set[int] = set()
    for i in ids:
        if index.conn.execute("SELECT 1 FROM items WHERE id=?", (int(i),)).fetchone() is None:
            raise PganError(f"index {index.path} holds no item with id {i}; nothing was removed")
        wanted.add(int(i))
    for p in paths:
        row = index.conn.execute("SELECT id FROM items WHERE path=?", (str(p),)).fetchone() or \
            index.conn.execute("SELECT id FROM items WHERE path=?", (str(Path(p).resolve()),)).fetchone()
        if row is None:
            raise PganError(f"index {index.path} holds no image {p}; nothing was removed")
        wanted.add(int(row[0]))
    if before is not None:
        cut = records.parse_time(before, "--before")
        wanted |= {r[0] for r in index.conn.execute("SELECT id FROM items WHERE ts IS NOT NULL AND ts<?",
                                                   (cut,))}
    gone = sorted(wanted)
    if not gone:
        return []
    store = index.vector_store
    with records.write(index.conn):
        for i in range(0, len(gone), 900):
            chunk = gone[i:i + 900]
            index.conn.execute(f"DELETE FROM items WHERE id IN ({','.join('?' * len(chunk))})", chunk)
        store.remove(gone)
        records.bump(index.conn)
    return gone
