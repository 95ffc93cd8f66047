"""The faiss side of a gallery index: :class:`FaissStore`, the default
:class:`pgan.index.vector_store.VectorStore`, over the segment files of :mod:`pgan.index.segments`.

* **add**: each committed batch becomes a log segment, listed in the same SQLite transaction as its rows,
  so it is searchable (exactly) as soon as it commits, and a killed writer loses at most the batch in
  flight; nothing already on disk is rewritten.
* **finalize** (end of a build or add): the log segments become one faiss segment of the index type
  (``auto``, the default: chosen by the segment's row count, :mod:`pgan.index.tuning`; ``Flat`` while a
  trained type has too few rows to train on), rows in camera-major order, and when more than
  :data:`MAX_SEGMENTS` faiss segments exist the smallest are merged. One merger at a time
  (``INDEX/writer.lock``); adds go on meanwhile.
* **remove**: ids go to the ``tombstones`` table; every search masks them out (a reader that sees a new
  generation reloads the set), and merging or :meth:`FaissStore.compact` drops their vectors.

Example::

    idx = GalleryIndex.open("runs/gallery", readonly=False)
    idx.remove(ids=[3, 4]); idx.vector_store.compact()
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from pgan.errors import PganError
from pgan.index import records, tuning
from pgan.index import segments as seg
from pgan.index.vector_store import Record, SearchFilter, VectorStore

log = logging.getLogger(__name__)

__all__ = ["DEFAULT_PARAMS", "FaissStore", "SEGMENTS_DIR"]

SEGMENTS_DIR, LOCK_NAME = "segments", "writer.lock"
DEFAULT_PARAMS = {"efConstruction": 80, "efSearch": 128, "nprobe": 32, "recall_target": 0.99}
"""``recall_target``: approximate segments of :data:`pgan.index.tuning.TUNE_MIN` rows or more get the least
efSearch (HNSW) or nprobe (IVF) measured to reach it (``efSearch`` / ``nprobe`` then apply to smaller
ones); None keeps them."""
MAX_SEGMENTS = 8  # faiss segments kept before finalize merges the smallest
ORPHAN_AGE_S = 600  # an unlisted segment file older than this is a crashed writer's


class FaissStore(VectorStore):
    """The segments of one index folder (see the module docstring)."""

    backend = "faiss"

    def __init__(self, record: Record) -> None:
        self.record = record
        self.folder = record.path / SEGMENTS_DIR
        self._segments: dict[str, seg.Segment] = {}
        self._gen: int | None = None
        self._reload = threading.Lock()

    # --- the manifest -------------------------------------------------------------------------
    def _manifest(self) -> tuple[int, list[tuple[str, str, int, str]], np.ndarray]:
        """``(generation, [(name, kind, rows, params JSON)], tombstoned ids)`` read as one snapshot."""
        conn = records.connect(self.record.path / records.DB_NAME, readonly=True)
        try:
            conn.execute("BEGIN")
            gen = records.generation(conn)
            listed = conn.execute("SELECT name, kind, rows, params FROM segments ORDER BY first_id").fetchall()
            dead = np.array([r[0] for r in conn.execute("SELECT id FROM tombstones")], dtype=np.int64)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return gen, listed, dead

    def refresh(self, wait: bool = True) -> bool:
        """Load what writers committed since the last look (new segments, merges, removals); True when the
        searchable set changed. ``wait=False`` returns at once when another thread is already loading."""
        gen = records.generation(self.record.conn)
        if gen == self._gen:
            return False
        if not self._reload.acquire(blocking=wait):
            return False
        try:
            for attempt in range(5):
                gen, listed, dead = self._manifest()
                if gen == self._gen:
                    return False
                try:
                    loaded = {name: self._segments.get(name) or seg.load(self.folder, name, kind, self.record.dim,
                                                                         {**self.record.params, **json.loads(p)})
                              for name, kind, _, p in listed}
                except FileNotFoundError:  # merged away between the manifest and the file: read both again
                    time.sleep(0.05 * (attempt + 1))
                    continue
                for s in loaded.values():
                    s.set_tombstones(dead)
                self._segments, self._gen = loaded, gen
                return True
            raise PganError(f"index {self.record.path}: a segment listed in {records.DB_NAME} is missing from "
                            f"{self.folder} (copied without it?); rebuild the index")
        finally:
            self._reload.release()

    def loaded(self) -> list[seg.Segment]:
        """The segments searches use now (loading the newest when ``auto_refresh``)."""
        return self._current()

    def _current(self) -> list[seg.Segment]:
        if self._gen is None or self.record.auto_refresh:
            self.refresh(wait=self._gen is None)
        return list(self._segments.values())

    def stale(self) -> bool:
        """True when writers committed something this process has not loaded yet."""
        return records.generation(self.record.conn) != self._gen

    def searchable(self) -> int:
        return sum(s.live for s in self._current())

    def status(self) -> tuple[int, str | None]:
        conn = self.record.conn
        rows = int(conn.execute("SELECT COALESCE(SUM(rows), 0) FROM segments").fetchone()[0])
        dead = int(conn.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0])
        missing = [n for n, k in conn.execute("SELECT name, kind FROM segments")
                   if not all(f.is_file() for f in seg.files(self.folder, n, k))]
        if missing:
            return 0, f"segment {missing[0]} is missing from {self.folder}"
        return rows - dead, None

    def describe(self) -> dict:
        conn = self.record.conn
        kinds = dict(conn.execute("SELECT kind, COUNT(*) FROM segments GROUP BY kind").fetchall())
        types = dict(conn.execute("SELECT index_type, COUNT(*) FROM segments WHERE kind='faiss' "
                                  "GROUP BY index_type").fetchall())
        return {"backend": self.backend, "segments": kinds.get("faiss", 0), "log_segments": kinds.get("log", 0),
                "segment_types": types,
                "tombstones": int(conn.execute("SELECT COUNT(*) FROM tombstones").fetchone()[0]),
                "disk_bytes": sum(p.stat().st_size for p in self.folder.glob("*") if p.is_file())
                if self.folder.is_dir() else 0}

    # --- writing (inside the record's write transaction) -----------------------------------------
    def add(self, ids: list[int], vectors: np.ndarray, items: list) -> None:
        if not ids:
            return
        name = f"log-{ids[0]}-{uuid.uuid4().hex[:8]}"
        cols = seg.Columns.of(ids, [it.camera for it in items], [it.vehicle_id for it in items],
                              [records.time_value(it.timestamp) for it in items])
        seg.write_log(self.folder, name, vectors, cols)
        self.record.conn.execute("INSERT INTO segments VALUES (?, 'log', ?, ?, ?, 'Flat', '{}')",
                                 (name, len(ids), ids[0], ids[-1]))

    def remove(self, ids: list[int]) -> None:
        self.record.conn.executemany("INSERT OR IGNORE INTO tombstones VALUES (?)", [(int(i),) for i in ids])

    # --- reading vectors --------------------------------------------------------------------------
    def vector(self, image_id: int) -> np.ndarray:
        for s in self._current():
            row = s.row_of(int(image_id))
            if row is not None and (s.alive is None or s.alive[row]):
                return s.vectors(np.array([row]))[0]
        raise KeyError(image_id)

    def all_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of every live item, in id order."""
        parts = [(s.columns.ids if s.alive is None else s.columns.ids[s.alive],
                  s.vectors(None if s.alive is None else np.flatnonzero(s.alive))) for s in self._current()]
        if not parts:
            return np.zeros(0, np.int64), np.zeros((0, self.record.dim), np.float32)
        ids = np.concatenate([p[0] for p in parts])
        vecs = np.concatenate([p[1] for p in parts])
        order = np.argsort(ids, kind="stable")
        return ids[order], vecs[order]

    # --- search -------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, where: SearchFilter) -> list[list[tuple[float, int]]]:
        found_s, found_i = [], []
        for s in self._current():
            scores, ids = s.search_where(queries, k, where) if where.active else s.search(queries, k, None)
            found_s.append(scores)
            found_i.append(ids)
        if not found_s:
            return [[] for _ in queries]
        scores, ids = np.concatenate(found_s, axis=1), np.concatenate(found_i, axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return [[(float(scores[q, j]), int(ids[q, j])) for j in order[q] if ids[q, j] >= 0]
                for q in range(len(queries))]

    # --- reorganising -----------------------------------------------------------------------------
    @contextmanager
    def _merge_lock(self) -> Iterator[None]:
        self.record.path.mkdir(parents=True, exist_ok=True)
        with open(self.record.path / LOCK_NAME, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def finalize(self) -> int:
        with self._merge_lock():
            self._remove_orphans()
            _, listed, _ = self._manifest()
            logs = [n for n, kind, _, _ in listed if kind == "log"]
            if logs:
                self._merge(logs)
            _, listed, _ = self._manifest()
            built = sorted((rows, n) for n, kind, rows, _ in listed if kind == "faiss")
            if len(built) > MAX_SEGMENTS:
                self._merge([n for _, n in built[:len(built) - MAX_SEGMENTS // 2 + 1]])
        self.refresh()
        return self.searchable()

    def compact(self) -> int:
        """Merge every segment into one, dropping the vectors of removed items; returns the live rows."""
        with self._merge_lock():
            _, listed, _ = self._manifest()
            if len(listed) > 1 or any(k == "log" for _, k, _, _ in listed) or self.record.conn.execute(
                    "SELECT 1 FROM tombstones LIMIT 1").fetchone():
                self._merge([n for n, _, _, _ in listed])
        self.refresh()
        return self.searchable()

    def _merge(self, names: list[str]) -> None:
        """Replace the segments ``names`` by one faiss segment of their live rows (under the merge lock)."""
        rec = self.record
        _, listed, dead = self._manifest()
        kinds = {n: (k, json.loads(p)) for n, k, _, p in listed}
        parts = [seg.load(self.folder, n, kinds[n][0], rec.dim, rec.params) for n in names]
        kept = [np.flatnonzero(~np.isin(s.columns.ids, dead)) if len(dead) else np.arange(len(s)) for s in parts]
        columns = seg.Columns.concat([s.columns.take(rows) for s, rows in zip(parts, kept)])
        # camera-major rows (then id): a camera's rows, and a time window's within it, are contiguous
        order = np.lexsort((columns.ids, columns.camera))
        columns = columns.take(order)
        part_of = np.repeat(np.arange(len(parts)), [len(r) for r in kept])[order]
        source_row = np.concatenate(kept)[order] if kept else np.zeros(0, np.int64)
        vectors = np.empty((len(columns.ids), rec.dim), np.float32)  # filled in place: one copy in memory
        for j in range(0, len(order), 65536):
            part, rows = part_of[j:j + 65536], source_row[j:j + 65536]
            for p in np.unique(part):
                here = np.flatnonzero(part == p)
                s = parts[p]
                vectors[j + here] = s.flat[rows[here]] if s.flat is not None else s.vectors(rows[here])
        dropped = np.setdiff1d(np.concatenate([s.columns.ids for s in parts]), columns.ids)
        name = None
        if len(columns.ids):
            kind = tuning.segment_index_type(rec.index_type, len(vectors), rec.dim)
            index = seg.new_inner_index(rec.dim, kind, rec.params)
            if seg.training_need(index, kind) > len(vectors):  # too few to train: exact until a later merge
                kind, index = "Flat", seg.new_inner_index(rec.dim, "Flat", rec.params)
            if not index.is_trained:
                index.train(vectors[tuning.train_sample(len(vectors), index)])
            for j in range(0, len(vectors), 65536):
                index.add(vectors[j:j + 65536])
            params = {k: v for k, v in rec.params.items() if k in ("efSearch", "nprobe", "k_factor")}
            target = rec.params.get("recall_target")
            if target and len(vectors) >= tuning.TUNE_MIN:
                params.update(tuning.tune(index, vectors, float(target)))
                if "tuned_recall" in params:
                    log.info("%s: %s reaches recall@10 %.4f (target %s) on %d rows", rec.path,
                             {k: v for k, v in params.items() if k in ("efSearch", "nprobe")},
                             params["tuned_recall"], target, len(vectors))
                missed = params.get("tuned_recall", 1.0) < float(target)
                if missed and rec.index_type == tuning.AUTO:  # auto keeps its promise: exact, slower
                    log.warning("%s: no search setting of %s reaches recall@10 %s on these vectors (%.4f "
                                "measured); this segment is searched exactly (Flat) instead", rec.path, kind,
                                target, params["tuned_recall"])
                    params = {"unreached": {"index_type": kind, "recall": params["tuned_recall"]}}
                    kind, index = "Flat", seg.new_inner_index(rec.dim, "Flat", rec.params)
                    for j in range(0, len(vectors), 65536):
                        index.add(vectors[j:j + 65536])
                elif missed:
                    log.warning("%s: no search setting of %s reaches recall@10 %s on these vectors (%.4f "
                                "measured); an exact index (--index-type Flat) answers them exactly", rec.path,
                                kind, target, params["tuned_recall"])
            seg.apply_search_params(index, params)
            name = f"seg-{int(columns.ids[0])}-{uuid.uuid4().hex[:8]}"
            seg.write_faiss(self.folder, name, index, columns)
        with records.write(rec.conn):
            rec.conn.executemany("DELETE FROM segments WHERE name=?", [(n,) for n in names])
            if name is not None:
                rec.conn.execute("INSERT INTO segments VALUES (?, 'faiss', ?, ?, ?, ?, ?)",
                                 (name, len(columns.ids), int(columns.ids.min()), int(columns.ids.max()), kind,
                                  json.dumps(params)))
            rec.conn.executemany("DELETE FROM tombstones WHERE id=?", [(int(i),) for i in dropped])
            records.bump(rec.conn)
        del parts
        for n in names:
            for f in seg.files(self.folder, n, kinds[n][0]):
                f.unlink(missing_ok=True)

    def _remove_orphans(self) -> None:
        if not self.folder.is_dir():
            return
        listed = {n for (n,) in self.record.conn.execute("SELECT name FROM segments")}
        cutoff = time.time() - ORPHAN_AGE_S
        for f in self.folder.iterdir():
            stem = f.name.lstrip(".").split(".")[0]
            if stem and stem not in listed and f.stat().st_mtime < cutoff:
                log.warning("%s: removing %s, left by a writer that stopped before committing it", self.folder,
                            f.name)
                f.unlink(missing_ok=True)


def folder_bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in path.rglob("*") if p.is_file())
