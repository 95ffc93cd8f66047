"""``GalleryIndex``: a folder holding the gallery's vectors (faiss) and metadata (SQLite).

Layout of an index folder::

    INDEX/index.sqlite   meta (key/value: dim, index_type, params, model fingerprint, checkpoint, ...),
                         items (id, path, camera, vehicle_id, timestamp, boxes JSON, vector float32 blob),
                         log (files skipped, with the reason)
    INDEX/vectors.faiss  the faiss index (an IndexIDMap2 over the factory string), written atomically

SQLite is the record: rows and their vectors are committed batch by batch, so a
killed build keeps every finished batch. The faiss file is derived from it and
brought up to date (:meth:`GalleryIndex.finalize`) at the end of every build or
add; an index whose faiss file lags its rows refuses searches until then.

Scores are inner products of L2-normalised embeddings, i.e. cosine similarity.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np

from pgan.errors import IndexMismatchError, PganError
from pgan.utils.atomic import atomic_open

log = logging.getLogger(__name__)

DB_NAME, FAISS_NAME = "index.sqlite", "vectors.faiss"
SCHEMA_VERSION = "1"
DEFAULT_PARAMS = {"efConstruction": 80, "efSearch": 128, "nprobe": 32}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, camera INTEGER,
    vehicle_id INTEGER, timestamp TEXT, boxes TEXT NOT NULL, vector BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (path TEXT PRIMARY KEY, reason TEXT NOT NULL, logged_at TEXT NOT NULL);
"""


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


@dataclass
class GalleryItem:
    """What :meth:`GalleryIndex.add_batch` stores for one image (its id is assigned there)."""

    path: str
    camera: int | None = None
    vehicle_id: int | None = None
    timestamp: str | None = None
    boxes: list[list[float]] = field(default_factory=list)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")


def new_faiss_index(dim: int, index_type: str, params: dict) -> faiss.Index:
    """An empty inner-product ``IndexIDMap2`` over ``faiss.index_factory(dim, index_type)``."""
    try:
        inner = faiss.index_factory(dim, index_type, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise PganError(f"invalid faiss index type {index_type!r}: {str(exc).splitlines()[-1]}") from None
    hnsw = getattr(faiss.downcast_index(inner), "hnsw", None)
    if hnsw is not None:
        hnsw.efConstruction = int(params["efConstruction"])
    return faiss.IndexIDMap2(inner)


def _apply_search_params(index: faiss.Index, params: dict) -> None:
    inner = faiss.downcast_index(index.index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = int(params["efSearch"])
    try:
        faiss.extract_index_ivf(inner).nprobe = int(params["nprobe"])
    except RuntimeError:
        pass  # not an IVF index


class GalleryIndex:
    """A gallery index folder. Open with :meth:`open` (search) or :meth:`create` (build)."""

    def __init__(self, path: Path, conn: sqlite3.Connection, readonly: bool) -> None:
        self.path = path
        self.conn = conn
        self.readonly = readonly
        self.meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        self.params = json.loads(self.meta.get("params", "{}")) or dict(DEFAULT_PARAMS)
        self._faiss: faiss.Index | None = None
        self._cameras: dict[int, int | None] | None = None  # id -> camera, loaded on the first filtered search

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, readonly: bool = True) -> GalleryIndex:
        path = Path(path)
        db = path / DB_NAME
        if not db.is_file():
            raise PganError(f"{path} is not a gallery index (no {DB_NAME}; build one with 'pgan index build')")
        try:
            conn = sqlite3.connect(f"file:{db}?mode={'ro' if readonly else 'rw'}", uri=True,
                                   check_same_thread=False)
            conn.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise PganError(f"cannot read index database {db}: {exc}") from None
        idx = cls(path, conn, readonly)
        if "dim" not in idx.meta or "index_type" not in idx.meta:
            raise PganError(f"{db} lacks its index settings (not written by pgan, or its creation was killed)")
        return idx

    @classmethod
    def create(cls, path: str | Path, dim: int, model_fingerprint: str, checkpoint: str | Path,
               index_type: str = "Flat", params: dict | None = None, **extra: str) -> GalleryIndex:
        """A new, empty index at ``path``; if one exists there already it is opened for appending after
        checking it was built with the same model and index type (this is how a build resumes)."""
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
        conn = sqlite3.connect(path / DB_NAME, check_same_thread=False)
        with conn:
            conn.executescript(_SCHEMA)
            meta = {"schema_version": SCHEMA_VERSION, "dim": str(dim), "index_type": index_type,
                    "params": json.dumps(params), "metric": "inner_product",
                    "model_fingerprint": model_fingerprint,
                    "checkpoint": str(Path(checkpoint).resolve()), "created": _now(), "faiss_ntotal": "0",
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
        ntotal = int(self.meta.get("faiss_ntotal", 0))
        return {"path": str(self.path.resolve()), "size": len(self), "dim": self.dim,
                "index_type": self.index_type, "params": self.params, "metric": self.meta.get("metric"),
                "model_fingerprint": self.model_fingerprint, "checkpoint": str(self.checkpoint),
                "skipped": skipped, "searchable": ntotal, "complete": ntotal == len(self),
                **{k: self.meta[k] for k in ("created", "finalized", "source", "parts", "runtime")
                   if k in self.meta}}

    # --- reading items ------------------------------------------------------------------------
    _COLS = "id, path, camera, vehicle_id, timestamp, boxes"

    @staticmethod
    def _hit(row: tuple, rank: int = 0, score: float = 0.0) -> Hit:
        return Hit(rank, score, int(row[0]), row[1], row[2], row[3], row[4], json.loads(row[5]))

    def get(self, image_id: int) -> Hit | None:
        row = self.conn.execute(f"SELECT {self._COLS} FROM items WHERE id=?", (int(image_id),)).fetchone()
        return self._hit(row) if row else None

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
                                  [(p, r, _now()) for p, r in skipped])
        return ids

    def set_meta(self, **values: str) -> None:
        self._writable()
        with self.conn:
            self.conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                  [(k, str(v)) for k, v in values.items()])
        self.meta.update({k: str(v) for k, v in values.items()})

    def finalize(self) -> int:
        """Bring ``vectors.faiss`` up to date with the rows (adding only what it lacks); returns its size."""
        self._writable()
        n = len(self)
        index = self._read_faiss() if (self.path / FAISS_NAME).is_file() else None
        if index is not None and index.ntotal > n:
            index = None  # rows were removed behind our back: rebuild
        if index is None:
            index = new_faiss_index(self.dim, self.index_type, self.params)
        if index.ntotal < n:
            done = faiss.vector_to_array(index.id_map) if index.ntotal else np.zeros(0, np.int64)
            ids, vecs = self.vectors(int(done.max()) if done.size else -1)
            if not index.is_trained:
                _train(index, self.index_type, vecs)
            index.add_with_ids(vecs, ids)
            with atomic_open(self.path / FAISS_NAME, "wb") as fh:
                fh.write(faiss.serialize_index(index).tobytes())
        self.set_meta(faiss_ntotal=str(index.ntotal), finalized=_now())
        self._faiss = index
        return int(index.ntotal)

    # --- search -------------------------------------------------------------------------------
    def _read_faiss(self) -> faiss.Index:
        raw = np.fromfile(self.path / FAISS_NAME, dtype=np.uint8)
        try:
            return faiss.deserialize_index(raw)
        except RuntimeError:
            raise PganError(f"{self.path / FAISS_NAME} is not a readable faiss index") from None

    def faiss_index(self) -> faiss.Index:
        if self._faiss is None:
            if not (self.path / FAISS_NAME).is_file():
                raise PganError(f"index {self.path} has no {FAISS_NAME} yet: its build was interrupted; "
                                f"rerun 'pgan index build' to finish it")
            self._faiss = self._read_faiss()
            _apply_search_params(self._faiss, self.params)
        if self._faiss.ntotal != len(self):
            raise PganError(f"index {self.path} is incomplete ({self._faiss.ntotal} of {len(self)} items "
                            f"searchable): its build was interrupted; rerun 'pgan index build' to finish it")
        return self._faiss

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
        index = self.faiss_index()
        n = index.ntotal
        if n == 0:
            raise PganError(f"index {self.path} is empty")
        if topk > n:
            log.warning("topk=%d exceeds the gallery's %d items; returning all of them", topk, n)
        filtered = camera is not None or exclude_camera is not None
        allowed = None
        if filtered:
            if self._cameras is None:
                self._cameras = dict(self.conn.execute("SELECT id, camera FROM items").fetchall())
            cams = self._cameras
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
        rows = {r[0]: r for r in self.conn.execute(f"SELECT {self._COLS} FROM items WHERE id IN ({marks})",
                                                   [i for _, i in pairs])}
        return [self._hit(rows[i], rank, s) for rank, (s, i) in enumerate(pairs, 1)]


def _train(index: faiss.Index, index_type: str, vecs: np.ndarray) -> None:
    """Train an IVF / PQ index on the gallery's own vectors (a clear error when there are too few)."""
    inner = faiss.downcast_index(index.index)
    need = 1
    try:
        need = max(need, faiss.extract_index_ivf(inner).nlist)
    except RuntimeError:
        pass
    if "PQ" in index_type:
        need = max(need, 256)
    if len(vecs) < need:
        raise PganError(f"index type {index_type!r} must be trained on at least {need} vectors; the gallery has "
                        f"{len(vecs)} (use 'Flat' or 'HNSW32,Flat' for small galleries)")
    index.train(vecs)
