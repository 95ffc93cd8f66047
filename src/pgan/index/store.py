"""``GalleryIndex``: a folder holding the gallery's metadata (SQLite) and the one copy of its vectors
(faiss segments, or a Milvus collection).

Layout of an index folder::

    INDEX/index.sqlite        meta (key/value: dim, index_type, params, model fingerprint, checkpoint,
                              parts, build_id, generation, next_id, ...), items (id, path, camera,
                              vehicle_id, timestamp, boxes: metadata only), segments, tombstones, log (files
                              skipped, with the reason); WAL mode (:mod:`pgan.index.records`)
    INDEX/segments/           backend 'faiss' (the default): the vectors, in immutable segment files
                              (:mod:`pgan.index.segments`, :mod:`pgan.index.vectors`)
    INDEX/writer.lock         held while segments are merged (one merger at a time)

or, with backend 'milvus', a Milvus collection named in meta (``milvus_uri``, ``milvus_collection``;
:mod:`pgan.index.milvus`). Either is a :class:`pgan.index.vector_store.VectorStore`.

Each batch's rows and vectors commit in one ``BEGIN IMMEDIATE`` transaction: any number of processes may
add to one index at once (they queue for the write lock, briefly), and a killed writer leaves every
committed batch searchable. :meth:`GalleryIndex.remove` deletes rows and makes their vectors
unsearchable at once, for every reader: a reader checks the database's generation before each search.

Scores are inner products of L2-normalised embeddings, i.e. cosine similarity.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from pathlib import Path

import numpy as np

from pgan.errors import IndexMismatchError, PganError
from pgan.index import records, writes
from pgan.index.records import DB_NAME, ITEM_COLUMNS, GalleryItem, Hit, hit_from_row
from pgan.index.segments import new_inner_index
from pgan.index.tuning import AUTO
from pgan.index.vector_store import BACKENDS, SearchFilter, VectorStore, check_queries
from pgan.index.vectors import DEFAULT_PARAMS, SEGMENTS_DIR, FaissStore

log = logging.getLogger(__name__)

__all__ = ["DB_NAME", "DEFAULT_PARAMS", "SEGMENTS_DIR", "GalleryIndex", "GalleryItem", "Hit"]


class GalleryIndex:
    """A gallery index folder. Open with :meth:`open` (search) or :meth:`create` (build)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly
        self.meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.params = json.loads(self.meta.get("params", "{}")) or dict(DEFAULT_PARAMS)
        self.auto_refresh = True  # search() loads a newer snapshot first (the service refreshes from a thread)
        self._store: VectorStore | None = None

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> GalleryIndex:
        """The index folder ``path``, or the gallery a ``milvus://host:port/collection`` handle names
        (:class:`pgan.index.milvus_gallery.MilvusGallery`, same methods)."""
        from pgan.index.milvus_gallery import MilvusGallery, is_handle

        if is_handle(path):
            return MilvusGallery.open(str(path), readonly)
        path = Path(path)
        db = path / DB_NAME
        conn = records.connect(db, readonly)
        try:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                records.check_schema(db, conn)
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
               index_type: str = "Flat", params: dict | None = None, backend: str | None = None,
               uri: str | None = None, collection: str | None = None, **extra: str) -> GalleryIndex:
        """A new, empty index at ``path``; if one exists there already it is opened for appending after
        checking it was built with the same model, index type and vector store (this is how a build resumes).

        ``backend``: ``"faiss"`` (the default for a new index; a resumed one keeps its own) or ``"milvus"``,
        with ``uri`` (a Milvus Lite ``.db`` path or ``http://host:19530``) and ``collection`` (default: from
        the folder's name). A new database never inherits a faiss file left in the folder (a removed
        ``index.sqlite`` rebuilt there): it is deleted, and the new database gets a new ``build_id``; a
        Milvus collection that exists already is never taken over (one line, nothing changed)."""
        from pgan.index.milvus_gallery import MilvusGallery, is_handle

        if is_handle(path):
            if backend not in (None, "milvus") or uri is not None or collection is not None:
                raise PganError(f"{path} is a Milvus gallery handle: --backend, --uri, --collection do not apply")
            return MilvusGallery.create(str(path), dim, model_fingerprint, checkpoint,
                                        "HNSW32" if index_type in ("auto", "HNSW32,Flat") else index_type,
                                        params, **extra)
        path = Path(path)
        params = {**DEFAULT_PARAMS, **(params or {})}
        if backend is not None and backend not in BACKENDS:
            raise PganError(f"unknown vector backend {backend!r}; choose one of {', '.join(BACKENDS)}")
        if (path / DB_NAME).is_file():
            idx = cls.open(path, readonly=False)
            idx.check_model(model_fingerprint, dim)
            if idx.index_type != index_type and index_type != AUTO:  # auto: whatever it was built with
                raise PganError(f"{path} was built as {idx.index_type!r}, not {index_type!r}; "
                                f"choose another --out or the same --index-type")
            if "flip" in extra and idx.meta.get("flip", str(extra["flip"])) != str(extra["flip"]):
                raise IndexMismatchError(f"{path} was built with flip={idx.meta['flip']}; resume it with the same")
            idx.check_backend(backend, uri, collection)
            idx.vector_store.check()
            return idx
        backend = backend or "faiss"
        store_meta: dict[str, str] = {}
        if backend == "faiss":
            if uri is not None or collection is not None:
                raise PganError("--uri and --collection are settings of '--backend milvus'")
            if index_type != AUTO:
                new_inner_index(dim, index_type, params)  # validate the factory string before writing anything
        else:
            from pgan.index import milvus

            store_meta = milvus.settings(path, uri, collection, index_type)
            milvus.claim(store_meta, model_fingerprint, dim)  # refuse a collection that exists already
        path.mkdir(parents=True, exist_ok=True)
        if (path / SEGMENTS_DIR).exists():
            import shutil

            log.warning("%s: removing %s left by an earlier index (its database is gone)", path, SEGMENTS_DIR)
            shutil.rmtree(path / SEGMENTS_DIR)
        conn = records.connect(path / DB_NAME, readonly=False, create=True)
        conn.executescript(records.SCHEMA)
        with records.write(conn):
            meta = {"schema_version": records.SCHEMA_VERSION, "dim": str(dim), "index_type": index_type,
                    "params": json.dumps(params), "metric": "inner_product",
                    "model_fingerprint": model_fingerprint, "build_id": uuid.uuid4().hex,
                    "checkpoint": str(Path(checkpoint).resolve()), "created": records.now(),
                    "generation": "0", "next_id": "0",
                    "backend": backend, **store_meta, **{k: str(v) for k, v in extra.items()}}
            conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        return cls(path, conn, readonly=False)

    def check_backend(self, backend: str | None, uri: str | None, collection: str | None) -> None:
        """One line unless a resumed build names this index's own vector store (or none)."""
        if backend is not None and backend != self.backend:
            raise PganError(f"{self.path} keeps its vectors in {self.backend}, not {backend}; resume it with "
                            f"--backend {self.backend} (or without --backend), or choose another --out")
        if self.backend == "faiss":
            if uri is not None or collection is not None:
                raise PganError(f"{self.path} keeps its vectors in faiss: --uri and --collection do not apply")
            return
        from pgan.index import milvus

        given = milvus.settings(self.path, uri or self.meta["milvus_uri"],
                                collection or self.meta["milvus_collection"], self.index_type)
        for key, flag in (("milvus_uri", "--uri"), ("milvus_collection", "--collection")):
            if given[key] != self.meta[key]:
                raise PganError(f"{self.path} keeps its vectors at {flag} {self.meta[key]}, not {given[key]}; "
                                f"resume it with the same (or without {flag})")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
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

    @property
    def backend(self) -> str:
        """Where the vectors live: ``faiss`` (``segments/``) or ``milvus`` (a collection)."""
        return self.meta.get("backend", "faiss")

    @property
    def vector_store(self) -> VectorStore:
        """The backend's :class:`VectorStore` (made on first use; the Milvus one connects then)."""
        if self._store is None:
            if self.backend == "faiss":
                self._store = FaissStore(self)
            elif self.backend == "milvus":
                from pgan.index.milvus import MilvusStore

                self._store = MilvusStore(self)
            else:
                raise PganError(f"{self.path / DB_NAME} names an unknown vector backend {self.backend!r} "
                                f"(written by a newer pgan?)")
        return self._store

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

    def info(self) -> dict:
        skipped = int(self.conn.execute("SELECT COUNT(*) FROM log").fetchone()[0])
        size = len(self)
        searchable, problem = self.vector_store.status()
        return {"path": str(self.path.resolve()), "size": size, "dim": self.dim,
                "index_type": self.index_type, "params": self.params, "metric": self.meta.get("metric"),
                "model_fingerprint": self.model_fingerprint, "checkpoint": str(self.checkpoint),
                "skipped": skipped, "searchable": searchable, "complete": problem is None and searchable == size,
                "build_id": self.build_id, **self.vector_store.describe(),
                **({"vectors_problem": problem} if problem else {}),
                **{k: self.meta[k] for k in ("created", "finalized", "source", "parts", "runtime")
                   if k in self.meta}}

    # --- reading items ------------------------------------------------------------------------
    def get(self, image_id: int) -> Hit | None:
        row = self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id=?", (int(image_id),)).fetchone()
        return hit_from_row(row) if row else None

    def vector(self, image_id: int) -> np.ndarray:
        """The stored ``(d,)`` embedding of a gallery item (:class:`KeyError` when unknown)."""
        if self.conn.execute("SELECT 1 FROM items WHERE id=?", (int(image_id),)).fetchone() is None:
            raise KeyError(image_id)
        return self.vector_store.vector(int(image_id))

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

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, vectors)`` of every item, in id order (faiss backend)."""
        store = self.vector_store
        if not isinstance(store, FaissStore):
            raise PganError(f"index {self.path} keeps its vectors in {self.backend}; read them there")
        return store.all_vectors()

    # --- writing ------------------------------------------------------------------------------
    def _writable(self) -> None:
        if self.readonly:
            raise PganError(f"index {self.path} is open read-only")

    def add_batch(self, items: list[GalleryItem], vectors: np.ndarray,
                  skipped: list[tuple[str, str]] = ()) -> list[int]:
        """Store one batch (rows, vectors, skipped files) in one transaction; returns the new ids
        (:func:`pgan.index.writes.add_batch`)."""
        self._writable()
        return writes.add_batch(self, items, vectors, skipped)

    def remove(self, paths: list[str] = (), ids: list[int] = (), before: str | None = None) -> list[int]:
        """Remove items by ``paths``, ``ids`` and timestamp ``before`` a time; returns the ids removed
        (:func:`pgan.index.writes.remove`)."""
        self._writable()
        return writes.remove(self, paths, ids, before)

    def set_meta(self, **values: str) -> None:
        self._writable()
        with records.write(self.conn):
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  [(k, str(v)) for k, v in values.items()])
        self.meta.update({k: str(v) for k, v in values.items()})

    def finalize(self) -> int:
        """Reorganise what was added for fast search (faiss: log segments into an index, small segments
        merged; Milvus: index and load the collection); returns how many items are searchable."""
        self._writable()
        n = self.vector_store.finalize()
        self.set_meta(finalized=records.now())
        return n

    # --- the searchable vectors -----------------------------------------------------------------
    def refresh(self, wait: bool = True) -> bool:
        """Pick up what writers committed since the last look (new segments, merges, removals); True when
        the searchable set changed. ``wait=False`` returns at once when another thread is already loading."""
        return self.vector_store.refresh(wait)

    def searchable(self) -> int:
        """How many items searches can return now."""
        return self.vector_store.searchable()

    # --- search -------------------------------------------------------------------------------
    def compact(self) -> int:
        """faiss: merge every segment into one and drop removed items' vectors; returns the searchable count
        (Milvus compacts by itself)."""
        self._writable()
        store = self.vector_store
        return store.compact() if isinstance(store, FaissStore) else store.searchable()

    def search(self, embeddings: np.ndarray, topk: int, camera: int | None = None,
               exclude_camera: int | None = None, since: str | int | None = None,
               until: str | int | None = None, vehicle_id: int | None = None) -> list[list[Hit]]:
        """The ``topk`` nearest gallery items of each row of ``embeddings`` (cosine, best first).

        Filters run inside the engine (see :class:`pgan.index.vector_store.SearchFilter`): ``camera``
        keeps only that camera's items, ``exclude_camera`` drops that camera's (the query's own, as in
        cross-camera evaluation), ``vehicle_id`` keeps one vehicle, ``since`` / ``until`` keep items whose
        timestamp lies in that window (both ends included; digits or ISO 8601, one line when malformed).
        ``topk`` beyond what the gallery holds returns every item, with a warning.
        """
        emb = check_queries(embeddings, self.dim, topk, self.path)
        where = SearchFilter.parse(camera, exclude_camera, since, until, vehicle_id)
        store = self.vector_store
        n = store.searchable()
        if n == 0:
            raise PganError(f"index {self.path} is empty")
        if topk > n:
            log.warning("topk=%d exceeds the gallery's %d items; returning all of them", topk, n)
        k = min(topk, n)
        found = store.search(emb, k, where)
        out = [self._hits(r) for r in found]
        lost = max(len(r) - len(h) for r, h in zip(found, out))
        if lost:  # rows removed since the engine last looked (a reader's older generation, Bounded consistency)
            if store.stale():
                store.refresh()
            out = [self._hits(r)[:k] for r in store.search(emb, min(k + lost, n), where)]
        return out

    def _hits(self, pairs: list[tuple[float, int]]) -> list[Hit]:
        """Hits of ``(score, id)`` pairs; ids whose rows are gone (removed meanwhile) are dropped."""
        if not pairs:
            return []
        marks = ",".join("?" * len(pairs))
        rows = {r[0]: r for r in self.conn.execute(f"SELECT {ITEM_COLUMNS} FROM items WHERE id IN ({marks})",
                                                   [i for _, i in pairs])}
        kept = [(s, i) for s, i in pairs if i in rows]
        return [hit_from_row(rows[i], rank, s) for rank, (s, i) in enumerate(kept, 1)]
