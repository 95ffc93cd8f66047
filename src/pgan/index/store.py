"""``GalleryIndex``: a folder holding the gallery's vectors (faiss) and metadata (SQLite).

Layout of an index folder::

    INDEX/index.sqlite        meta (key/value: dim, index_type, params, model fingerprint, checkpoint,
                              parts, build_id, ...), items (id, path, camera, vehicle_id, timestamp,
                              boxes JSON, vector float32 blob), log (files skipped, with the reason);
                              WAL mode (:mod:`pgan.index.records`)
    INDEX/vectors.faiss       the faiss index (an IndexIDMap2 over the factory string), derived from the
    INDEX/vectors.faiss.json  rows, and what it was derived from (:mod:`pgan.index.vectors`)

SQLite is the record: rows and their vectors are committed batch by batch, so a
killed build keeps every finished batch. The faiss file is derived from it and
brought up to date (:meth:`GalleryIndex.finalize`) at the end of every build or
add; a faiss file whose record does not match the database (another build, another
model, removed rows) is rebuilt from the stored vectors by a writer and refused by a
reader, never searched. A reader searches the last complete snapshot and, with
:meth:`GalleryIndex.refresh`, picks up the next one a writer publishes.

Scores are inner products of L2-normalised embeddings, i.e. cosine similarity.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from pathlib import Path

import faiss
import numpy as np

from pgan.errors import IndexMismatchError, PganError, StaleVectorsError
from pgan.index import records
from pgan.index import vectors as faissfile
from pgan.index.records import DB_NAME, ITEM_COLUMNS, GalleryItem, Hit, hit_from_row
from pgan.index.vectors import DEFAULT_PARAMS, FAISS_NAME, Derivation, Snapshot, new_faiss_index

log = logging.getLogger(__name__)

__all__ = ["DB_NAME", "DEFAULT_PARAMS", "FAISS_NAME", "GalleryIndex", "GalleryItem", "Hit", "new_faiss_index"]


class GalleryIndex:
    """A gallery index folder. Open with :meth:`open` (search) or :meth:`create` (build)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly
        self.meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.params = json.loads(self.meta.get("params", "{}")) or dict(DEFAULT_PARAMS)
        self.auto_refresh = True  # search() loads a newer snapshot first (the service refreshes from a thread)
        self._snap: Snapshot | None = None
        self._reload = threading.Lock()
        self._warned: str | None = None
        self._cameras: dict[int, int | None] | None = None  # id -> camera, loaded on the first filtered search

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> GalleryIndex:
        path = Path(path)
        db = path / DB_NAME
        conn = records.connect(db, readonly)
        try:
            idx = cls(path, conn, readonly)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise PganError(f"cannot read index database {db}: {exc}") from None
        if "dim" not in idx.meta or "index_type" not in idx.meta:
            raise PganError(f"{db} lacks its index settings (not written by pgan, or its creation was killed)")
        if not readonly and "build_id" not in idx.meta:  # written by an older pgan: give it an identity
            idx.set_meta(build_id=uuid.uuid4().hex)
        return idx

    @classmethod
    def create(cls, path: str | Path, dim: int, model_fingerprint: str, checkpoint: str | Path,
               index_type: str = "Flat", params: dict | None = None, **extra: str) -> GalleryIndex:
        """A new, empty index at ``path``; if one exists there already it is opened for appending after
        checking it was built with the same model and index type (this is how a build resumes).

        A new database never inherits a faiss file left in the folder (a removed ``index.sqlite``
        rebuilt there): it is deleted, and the new database gets a new ``build_id`` anyway."""
        path = Path(path)
        params = {**DEFAULT_PARAMS, **(params or {})}
        if (path / DB_NAME).is_file():
            idx = cls.open(path, readonly=False)
            idx.check_model(model_fingerprint, dim)
            if idx.index_type != index_type:
                raise PganError(f"{path} was built as {idx.index_type!r}, not {index_type!r}; "
                                f"choose another --out or the same --index-type")
            if "flip" in extra and idx.meta.get("flip", str(extra["flip"])) != str(extra["flip"]):
                raise IndexMismatchError(f"{path} was built with flip={idx.meta['flip']}; resume it with the same")
            return idx
        new_faiss_index(dim, index_type, params)  # validate the factory string before writing anything
        path.mkdir(parents=True, exist_ok=True)
        for stale in (FAISS_NAME, faissfile.SIDECAR_NAME):
            if (path / stale).exists():
                log.warning("%s: removing %s left by an earlier index (its database is gone)", path, stale)
                (path / stale).unlink()
        conn = records.connect(path / DB_NAME, readonly=False, create=True)
        with conn:
            conn.executescript(records.SCHEMA)
            meta = {"schema_version": records.SCHEMA_VERSION, "dim": str(dim), "index_type": index_type,
                    "params": json.dumps(params), "metric": "inner_product",
                    "model_fingerprint": model_fingerprint, "build_id": uuid.uuid4().hex,
                    "checkpoint": str(Path(checkpoint).resolve()), "created": records.now(), "faiss_ntotal": "0",
                    **{k: str(v) for k, v in extra.items()}}
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        return cls(path, conn, readonly=False)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- properties --------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def index_type(self) -> str:
        return self.meta["index_type"]

    @property
    def model_fingerprint(self) -> str:
        return self.meta["model_fingerprint"]

    @property
    def checkpoint(self) -> Path:
        return Path(self.meta["checkpoint"])

    @property
    def build_id(self) -> str:
        return self.meta.get("build_id", "")

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def check_model(self, fingerprint: str, dim: int | None = None) -> None:
        """:class:`IndexMismatchError` unless embeddings of the model ``fingerprint`` belong here."""
        if dim is not None and dim != self.dim:
            raise IndexMismatchError(f"index {self.path} holds {self.dim}-d embeddings; this model gives {dim}-d")
        if fingerprint.removesuffix("-int8") != self.model_fingerprint.removesuffix("-int8") or (
                fingerprint.endswith("-int8") != self.model_fingerprint.endswith("-int8")):
            raise IndexMismatchError(f"index {self.path} was built with model {self.model_fingerprint} "
                                     f"({self.checkpoint}); this model is {fingerprint}")

    def _disagreement(self, origin: Derivation, conn: sqlite3.Connection) -> str | None:
        """Why the faiss file described by ``origin`` was not derived from this database (None: it was)."""
        if origin.build_id != self.build_id:
            return (f"it was derived from another database (build {origin.build_id[:8] or '?'}, this one is "
                    f"{self.build_id[:8] or 'unrecorded'})")
        got, want = (origin.dim, origin.index_type, origin.model_fingerprint), (self.dim, self.index_type,
                                                                                self.model_fingerprint)
        if got != want:
            return "it holds {}-d {!r} vectors of model {}, the database {}-d {!r} of {}".format(*got, *want)
        held = records.rows_up_to(conn, origin.max_id)
        if held != origin.rows:
            return f"it holds {origin.rows} rows up to id {origin.max_id}, the database {held}"
        return None

    def info(self) -> dict:
        skipped = int(self.conn.execute("SELECT COUNT(*) FROM log").fetchone()[0])
        size = len(self)
        try:
            origin = faissfile.read_derivation(self.path)
            problem = self._disagreement(origin, self.conn)
        except FileNotFoundError:
            origin, problem = None, f"no {FAISS_NAME} yet"
        except StaleVectorsError as exc:
            origin, problem = None, str(exc)
        searchable = origin.rows if origin is not None and problem is None else 0
        return {"path": str(self.path.resolve()), "size": size, "dim": self.dim,
                "index_type": self.index_type, "params": self.params, "metric": self.meta.get("metric"),
                "model_fingerprint": self.model_fingerprint, "checkpoint": str(self.checkpoint),
                "skipped": skipped, "searchable": searchable, "complete": problem is None and searchable == size,
                "build_id": self.build_id, **({"vectors_problem": problem} if problem else {}),
                **{k: self.meta[k] for k in ("created", "finalized", "source", "parts", "runtime")
                   if k in self.meta}}

    # --- reading items ------------------------------------------------------------------------
    def get(self, image_id: int) -> Hit | None:
        row = self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id=?", (int(image_id),)).fetchone()
        return hit_from_row(row) if row else None

    def vector(self, image_id: int) -> np.ndarray:
        """The stored ``(d,)`` embedding of a gallery item (:class:`KeyError` when unknown)."""
        row = self.conn.execute("SELECT vector FROM items WHERE id=?", (int(image_id),)).fetchone()
        if row is None:
            raise KeyError(image_id)
        return np.frombuffer(row[0], dtype=np.float32).copy()

    def image_path(self, image_id: int) -> Path:
        row = self.conn.execute("SELECT path FROM items WHERE id=?", (int(image_id),)).fetchone()
        if row is None:
            raise KeyError(image_id)
        return Path(row[0])

    def paths(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT path FROM items")}

    def skipped(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every file a build skipped (unreadable, not an image)."""
        return [(r[0], r[1]) for r in self.conn.execute("SELECT path, reason FROM log ORDER BY path")]

    def vectors(self, after_id: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of the items with id > ``after_id``, in id order."""
        rows = self.conn.execute("SELECT id, vector FROM items WHERE id>? ORDER BY id", (after_id,)).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        return ids, vecs

    # --- writing ------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.readonly:
            raise PganError(f"index {self.path} is open read-only")

    def add_batch(self, items: list[GalleryItem], vectors: np.ndarray,
                  skipped: list[tuple[str, str]] = ()) -> list[int]:
        """Store one batch (rows, vectors, skipped files) in one transaction; returns the new ids."""
        self._writable()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(items), self.dim):
            raise IndexMismatchError(f"expected {len(items)} x {self.dim} vectors, got {vectors.shape}")
        self._cameras = None
        with self.conn:
            start = int(self.conn.execute("SELECT COALESCE(MAX(id), -1) FROM items").fetchone()[0]) + 1
            ids = list(range(start, start + len(items)))
            self.conn.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(i, it.path, it.camera, it.vehicle_id, it.timestamp, json.dumps(it.boxes), v.tobytes())
                 for i, it, v in zip(ids, items, vectors)])
            self.conn.executemany("DELETE FROM log WHERE path=?", [(it.path,) for it in items])
            self.conn.executemany("INSERT OR REPLACE INTO log VALUES (?, ?, ?)",
                                  [(p, r, records.now()) for p, r in skipped])
        return ids

    def set_meta(self, **values: str) -> None:
        self._writable()
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  [(k, str(v)) for k, v in values.items()])
        self.meta.update({k: str(v) for k, v in values.items()})

    def finalize(self) -> int:
        """Bring ``vectors.faiss`` up to date with the rows (adding only what it lacks, or rebuilding it from
        the stored vectors when it was derived from something else); returns its size. The search
        parameters apply at once, in this process."""
        self._writable()
        n = len(self)
        try:
            snap: Snapshot | None = faissfile.read_snapshot(self.path)
            problem = self._disagreement(snap.origin, self.conn)
        except FileNotFoundError:
            snap, problem = None, None
        except StaleVectorsError as exc:
            snap, problem = None, str(exc)
        if problem:
            log.warning("%s: %s; rebuilding it from the %d stored vectors", self.path / FAISS_NAME, problem, n)
            snap = None
        if snap is None or snap.origin.rows < n:
            index = snap.index if snap is not None else new_faiss_index(self.dim, self.index_type, self.params)
            ids, vecs = self.vectors(snap.origin.max_id if snap is not None else -1)
            if not index.is_trained:
                faissfile.train(index, self.index_type, vecs)
            if len(ids):
                index.add_with_ids(vecs, ids)
            origin = Derivation(self.build_id, self.model_fingerprint, self.index_type, self.dim,
                                int(index.ntotal), faissfile.max_id(index))
            snap = Snapshot(index, origin, faissfile.write_snapshot(self.path, index, origin))
        faissfile.apply_search_params(snap.index, self.params)
        self._snap = snap
        self._cameras = None
        self.set_meta(faiss_ntotal=str(snap.index.ntotal), finalized=records.now())
        return int(snap.index.ntotal)

    # --- the searchable snapshot ----------------------------------------------------------------
    def refresh(self, wait: bool = True) -> bool:
        """Load the snapshot a writer published since the one in use; True when it was swapped in.

        A snapshot that does not match the database is never searched: with none loaded yet this raises
        (one line, naming the fix); otherwise it is logged and the last good snapshot stays in use.
        ``wait=False`` returns at once when another thread is already loading."""
        stamp = faissfile.sidecar_stamp(self.path)
        if self._snap is not None and (stamp is None or stamp == self._snap.stamp):
            return False
        if not self._reload.acquire(blocking=wait):
            return False
        try:
            if self._snap is not None and faissfile.sidecar_stamp(self.path) == self._snap.stamp:
                return False  # another thread loaded it meanwhile
            try:
                snap = faissfile.read_snapshot(self.path)
                conn = records.connect(self.path / DB_NAME, readonly=True)  # this may run on any thread
                try:
                    problem = self._disagreement(snap.origin, conn)
                finally:
                    conn.close()
                if problem:
                    raise StaleVectorsError(f"{self.path / FAISS_NAME} does not match {DB_NAME}: {problem}")
            except FileNotFoundError:
                if self._snap is None:
                    raise PganError(f"index {self.path} has no {FAISS_NAME} yet: its build was interrupted; "
                                    f"rerun 'pgan index build' to finish it") from None
                return False
            except StaleVectorsError as exc:
                if self._snap is None:
                    raise StaleVectorsError(f"{exc}; rerun the same 'pgan index build' (or 'pgan index add') to "
                                            f"rebuild it from the stored vectors") from None
                if self._warned != str(exc):
                    log.warning("%s; still searching the previous snapshot (%d items)", exc,
                                self._snap.origin.rows)
                    self._warned = str(exc)
                return False
            faissfile.apply_search_params(snap.index, self.params)
            self._snap = snap
            self._cameras = None
            if snap.origin.rows < len(self):
                log.info("index %s: %d of %d items searchable (a build or add is running or was interrupted)",
                         self.path, snap.origin.rows, len(self))
            return True
        finally:
            self._reload.release()

    def snapshot(self) -> Snapshot:
        """The snapshot searches use (loaded on first use; a newer one first when ``auto_refresh``)."""
        if self._snap is None:
            self.refresh()
        elif self.auto_refresh:
            self.refresh(wait=False)
        assert self._snap is not None
        return self._snap

    def faiss_index(self) -> faiss.Index:
        return self.snapshot().index

    def searchable(self) -> int:
        """How many items searches can return now (the rows of the loaded snapshot)."""
        return int(self.snapshot().index.ntotal)

    # --- search -------------------------------------------------------------------------------
    def search(self, embeddings: np.ndarray, topk: int, camera: int | None = None,
               exclude_camera: int | None = None) -> list[list[Hit]]:
        """The ``topk`` nearest gallery items of each row of ``embeddings`` (cosine, best first).

        ``camera``: keep only gallery items from that camera. ``exclude_camera``: drop those
        from that camera (the query's own, as in cross-camera evaluation). ``topk`` beyond
        what the gallery holds returns every item, with a warning.
        """
        emb = np.ascontiguousarray(np.atleast_2d(embeddings), dtype=np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.dim:
            raise IndexMismatchError(f"index {self.path} holds {self.dim}-d embeddings; "
                                     f"the queries are {emb.shape[-1]}-d")
        if topk < 1:
            raise PganError(f"topk must be >= 1, got {topk}")
        index = self.faiss_index()  # one snapshot for the whole call, even if another is swapped in
        n = index.ntotal
        if n == 0:
            raise PganError(f"index {self.path} is empty")
        if topk > n:
            log.warning("topk=%d exceeds the gallery's %d items; returning all of them", topk, n)
        filtered = camera is not None or exclude_camera is not None
        allowed = None
        if filtered:
            cams = self._cameras
            if cams is None:
                cams = self._cameras = dict(self.conn.execute("SELECT id, camera FROM items").fetchall())
            allowed = {i for i, c in cams.items() if (camera is None or c == camera)
                       and (exclude_camera is None or c != exclude_camera)}
        want = min(topk, n if allowed is None else len(allowed))
        fetch = want if allowed is None else min(n, max(4 * want, 32))
        while True:
            scores, ids = index.search(emb, fetch)
            rows = [[(float(s), int(i)) for s, i in zip(sr, ir) if i >= 0 and (allowed is None or i in allowed)]
                    for sr, ir in zip(scores, ids)]
            if fetch >= n or all(len(r) >= want for r in rows):
                break
            fetch = min(n, fetch * 4)
        return [self._hits(r[:want]) for r in rows]

    def _hits(self, pairs: list[tuple[float, int]]) -> list[Hit]:
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        rows = {r[0]: r for r in self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id IN ({marks})",
                                                   [i for _, i in pairs])}
        return [hit_from_row(rows[i], rank, s) for rank, (s, i) in enumerate(pairs, 1)]
