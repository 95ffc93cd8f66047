"""The faiss side of a gallery index: ``vectors.faiss``, the record of what it was derived from, and
:class:`FaissStore`, the default :class:`pgan.index.vector_store.VectorStore`.

``vectors.faiss`` is derived from ``index.sqlite`` (which holds every vector). Beside it,
``vectors.faiss.json`` (a :class:`Derivation`, written atomically after the faiss file) names the
database build it came from (a random id written when ``index.sqlite`` is created), the model
fingerprint, the index type and dimension, and how many rows (ids up to ``max_id``) it holds. A reader
loads the pair as one :class:`Snapshot` and checks it against the database before searching it;
a pair that does not agree is never searched.

Example::

    snap = read_snapshot(Path("runs/gallery"))
    snap.origin.rows, snap.index.ntotal
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from pgan.errors import PganError, StaleVectorsError
from pgan.index import records
from pgan.index.records import DB_NAME
from pgan.index.vector_store import Record, SearchFilter, VectorStore
from pgan.utils.atomic import atomic_open

log = logging.getLogger(__name__)

FAISS_NAME, SIDECAR_NAME = "vectors.faiss", "vectors.faiss.json"
DEFAULT_PARAMS = {"efConstruction": 80, "efSearch": 128, "nprobe": 32}


@dataclass(frozen=True)
class Derivation:
    """What a faiss file was derived from (``vectors.faiss.json``)."""

    build_id: str  # the database's build id (meta 'build_id'), new for every index.sqlite created
    model_fingerprint: str
    index_type: str
    dim: int
    rows: int  # vectors in the faiss file: the database's rows with id <= max_id
    max_id: int  # -1 when empty


@dataclass
class Snapshot:
    """A faiss index and the record of what it holds; ``stamp`` identifies the record file read."""

    index: faiss.Index
    origin: Derivation
    stamp: tuple[int, int, int] | None = None


def sidecar_stamp(folder: Path) -> tuple[int, int, int] | None:
    """``(mtime_ns, size, inode)`` of ``vectors.faiss.json`` (None when absent): a cheap "has it changed"."""
    try:
        st = os.stat(folder / SIDECAR_NAME)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


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


def apply_search_params(index: faiss.Index, params: dict) -> None:
    """Set HNSW ``efSearch`` and IVF ``nprobe`` from the index's recorded parameters (not serialised by faiss)."""
    inner = faiss.downcast_index(index.index)
    if hasattr(inner, "hnsw"):
        inner.hnsw.efSearch = int(params["efSearch"])
    try:
        faiss.extract_index_ivf(inner).nprobe = int(params["nprobe"])
    except RuntimeError:
        pass  # not an IVF index


def search_params(index: faiss.Index) -> dict:
    """The search parameters in effect (``efSearch`` / ``nprobe`` where the index has them)."""
    inner = faiss.downcast_index(index.index)
    out = {}
    if hasattr(inner, "hnsw"):
        out["efSearch"] = int(inner.hnsw.efSearch)
    try:
        out["nprobe"] = int(faiss.extract_index_ivf(inner).nprobe)
    except RuntimeError:
        pass
    return out


def train(index: faiss.Index, index_type: str, vecs: np.ndarray) -> None:
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


def max_id(index: faiss.Index) -> int:
    return int(faiss.vector_to_array(index.id_map).max()) if index.ntotal else -1


def write_snapshot(folder: Path, index: faiss.Index, origin: Derivation) -> tuple[int, int, int] | None:
    """Write ``vectors.faiss`` then its record, each atomically; returns the record's stamp.

    A reader that sees the new faiss file with the old record finds their row counts disagree and
    retries (:func:`read_snapshot`), so it never pairs one build's vectors with another's record."""
    with atomic_open(folder / FAISS_NAME, "wb") as fh:
        fh.write(faiss.serialize_index(index).tobytes())
    with atomic_open(folder / SIDECAR_NAME, "w") as fh:
        json.dump(asdict(origin), fh, indent=1)
    return sidecar_stamp(folder)


def read_derivation(folder: Path) -> Derivation:
    """The record beside ``vectors.faiss``; :class:`FileNotFoundError` when there is no faiss file at all,
    :class:`StaleVectorsError` when the faiss file has no (readable) record."""
    if not (folder / FAISS_NAME).is_file():
        raise FileNotFoundError(folder / FAISS_NAME)
    try:
        raw = json.loads((folder / SIDECAR_NAME).read_text())
        return Derivation(**raw)
    except FileNotFoundError:
        raise StaleVectorsError(f"{folder / FAISS_NAME} carries no record of the database it was derived from "
                                f"({SIDECAR_NAME} is missing: an older pgan wrote it, or it was copied)") from None
    except (ValueError, TypeError) as exc:
        raise StaleVectorsError(f"{folder / SIDECAR_NAME} is not a readable derivation record ({exc})") from None


def read_snapshot(folder: Path, tries: int = 5) -> Snapshot:
    """``vectors.faiss`` and its record, read as one consistent pair (a writer may be replacing them)."""
    for attempt in range(tries):
        stamp = sidecar_stamp(folder)
        origin = read_derivation(folder)
        raw = np.fromfile(folder / FAISS_NAME, dtype=np.uint8)
        try:
            index = faiss.deserialize_index(raw)
        except RuntimeError:
            raise StaleVectorsError(f"{folder / FAISS_NAME} is not a readable faiss index") from None
        if index.ntotal == origin.rows and sidecar_stamp(folder) == stamp and max_id(index) == origin.max_id:
            return Snapshot(index, origin, stamp)
        time.sleep(0.05 * (attempt + 1))  # a writer between its two renames: read the pair again
    raise StaleVectorsError(f"{folder / FAISS_NAME} holds {index.ntotal} vectors but its record says "
                            f"{origin.rows}: the two files come from different writes")


class FaissStore(VectorStore):
    """``vectors.faiss`` + ``vectors.faiss.json`` in the index folder, derived from ``index.sqlite``.

    A writer brings the file up to date (adding only what it lacks, or rebuilding it from the stored
    vectors when it was derived from something else); a reader searches the last complete snapshot and
    loads the next one a writer publishes (:meth:`refresh`). A file that does not match the database is
    never searched. Filters are applied to the candidates faiss returns (ids allowed by the record's
    camera and timestamp columns), fetching more until each query has enough."""

    backend = "faiss"

    def __init__(self, record: Record) -> None:
        self.record = record
        self._snap: Snapshot | None = None
        self._reload = threading.Lock()
        self._warned: str | None = None
        self._items: list[tuple[int, int | None, str | None]] | None = None  # (id, camera, timestamp)

    # --- agreement with the database -----------------------------------------------------------
    def disagreement(self, origin: Derivation, conn: sqlite3.Connection) -> str | None:
        """Why the faiss file described by ``origin`` was not derived from this database (None: it was)."""
        rec = self.record
        if origin.build_id != rec.build_id:
            return (f"it was derived from another database (build {origin.build_id[:8] or '?'}, this one is "
                    f"{rec.build_id[:8] or 'unrecorded'})")
        got, want = (origin.dim, origin.index_type, origin.model_fingerprint), (rec.dim, rec.index_type,
                                                                                rec.model_fingerprint)
        if got != want:
            return "it holds {}-d {!r} vectors of model {}, the database {}-d {!r} of {}".format(*got, *want)
        held = records.rows_up_to(conn, origin.max_id)
        if held != origin.rows:
            return f"it holds {origin.rows} rows up to id {origin.max_id}, the database {held}"
        return None

    def status(self) -> tuple[int, str | None]:
        try:
            origin = read_derivation(self.record.path)
            problem = self.disagreement(origin, self.record.conn)
        except FileNotFoundError:
            return 0, f"no {FAISS_NAME} yet"
        except StaleVectorsError as exc:
            return 0, str(exc)
        return (origin.rows, None) if problem is None else (0, problem)

    # --- writing ------------------------------------------------------------------------------
    def finalize(self) -> int:
        rec = self.record
        n = len(rec)
        try:
            snap: Snapshot | None = read_snapshot(rec.path)
            problem = self.disagreement(snap.origin, rec.conn)
        except FileNotFoundError:
            snap, problem = None, None
        except StaleVectorsError as exc:
            snap, problem = None, str(exc)
        if problem:
            log.warning("%s: %s; rebuilding it from the %d stored vectors", rec.path / FAISS_NAME, problem, n)
            snap = None
        if snap is None or snap.origin.rows < n:
            index = snap.index if snap is not None else new_faiss_index(rec.dim, rec.index_type, rec.params)
            ids, vecs = rec.vectors(snap.origin.max_id if snap is not None else -1)
            if not index.is_trained:
                train(index, rec.index_type, vecs)
            if len(ids):
                index.add_with_ids(vecs, ids)
            origin = Derivation(rec.build_id, rec.model_fingerprint, rec.index_type, rec.dim,
                                int(index.ntotal), max_id(index))
            snap = Snapshot(index, origin, write_snapshot(rec.path, index, origin))
        apply_search_params(snap.index, rec.params)
        self._snap = snap
        self._items = None
        rec.set_meta(faiss_ntotal=str(snap.index.ntotal))
        return int(snap.index.ntotal)

    # --- the searchable snapshot ----------------------------------------------------------------
    def refresh(self, wait: bool = True) -> bool:
        """Load the snapshot a writer published since the one in use; True when it was swapped in.

        A snapshot that does not match the database is never searched: with none loaded yet this raises
        (one line, naming the fix); otherwise it is logged and the last good snapshot stays in use.
        ``wait=False`` returns at once when another thread is already loading."""
        path = self.record.path
        stamp = sidecar_stamp(path)
        if self._snap is not None and (stamp is None or stamp == self._snap.stamp):
            return False
        if not self._reload.acquire(blocking=wait):
            return False
        try:
            if self._snap is not None and sidecar_stamp(path) == self._snap.stamp:
                return False  # another thread loaded it meanwhile
            try:
                snap = read_snapshot(path)
                conn = records.connect(path / DB_NAME, readonly=True)  # this may run on any thread
                try:
                    problem = self.disagreement(snap.origin, conn)
                finally:
                    conn.close()
                if problem:
                    raise StaleVectorsError(f"{path / FAISS_NAME} does not match {DB_NAME}: {problem}")
            except FileNotFoundError:
                if self._snap is None:
                    raise PganError(f"index {path} has no {FAISS_NAME} yet: its build was interrupted; "
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
            apply_search_params(snap.index, self.record.params)
            self._snap = snap
            self._items = None
            if snap.origin.rows < len(self.record):
                log.info("index %s: %d of %d items searchable (a build or add is running or was interrupted)",
                         path, snap.origin.rows, len(self.record))
            return True
        finally:
            self._reload.release()

    def snapshot(self) -> Snapshot:
        """The snapshot searches use (loaded on first use; a newer one first when ``auto_refresh``)."""
        if self._snap is None:
            self.refresh()
        elif self.record.auto_refresh:
            self.refresh(wait=False)
        assert self._snap is not None
        return self._snap

    def searchable(self) -> int:
        return int(self.snapshot().index.ntotal)

    def forget(self) -> None:
        self._items = None

    # --- search -------------------------------------------------------------------------------
    def _allowed(self, where: SearchFilter) -> set[int]:
        items = self._items
        if items is None:
            items = self._items = self.record.conn.execute("SELECT id, camera, timestamp FROM items").fetchall()
        return {i for i, cam, ts in items if where.accepts(cam, ts)}

    def search(self, queries: np.ndarray, k: int, where: SearchFilter) -> list[list[tuple[float, int]]]:
        index = self.snapshot().index  # one snapshot for the whole call, even if another is swapped in
        n = int(index.ntotal)
        allowed = self._allowed(where) if where.active else None
        want = min(k, n if allowed is None else len(allowed))
        if want == 0:
            return [[] for _ in queries]
        fetch = want if allowed is None else min(n, max(4 * want, 32))
        while True:
            scores, ids = index.search(queries, fetch)
            rows = [[(float(s), int(i)) for s, i in zip(sr, ir) if i >= 0 and (allowed is None or i in allowed)]
                    for sr, ir in zip(scores, ids)]
            if fetch >= n or all(len(r) >= want for r in rows):
                break
            fetch = min(n, fetch * 4)
        return [r[:want] for r in rows]
