"""The faiss side of a gallery index: ``vectors.faiss`` and the record of what it was derived from.

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
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from pgan.errors import PganError, StaleVectorsError
from pgan.utils.atomic import atomic_open

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
