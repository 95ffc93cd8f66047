"""Gallery vectors in Milvus: :class:`MilvusStore`, the ``milvus`` :class:`~pgan.index.vector_store.VectorStore`.

One ``pymilvus.MilvusClient(uri=...)`` serves every deployment: a local path ending in ``.db`` is
Milvus Lite (embedded, opened by one process at a time), ``http://host:19530`` a Milvus standalone or
cluster (or ``milvus-lite server``, which many processes can share). The index folder keeps its SQLite
metadata and names the collection in its meta (``milvus_uri``, ``milvus_collection``); the collection
holds the only copy of every vector, beside the item's own fields:

* schema: ``id`` (INT64, the record's item id, primary key), ``vector`` (FLOAT_VECTOR, L2-normalised),
  ``camera``, ``vehicle_id`` and ``ts`` (INT64, :data:`NO_VALUE` when unknown; ``ts`` is the timestamp as
  :func:`pgan.index.records.time_value` reads it), ``path``, ``timestamp`` (the text) and ``boxes``
  (JSON text); searches filter on the INT64 fields inside Milvus (``camera == 3 and ts >= 30000``);
* index: HNSW (``HNSW32``, M=32, the default) or FLAT (exact), inner-product metric, so scores are the
  cosine similarities the faiss backend gives; scalar indexes on the filter fields where the server has
  them;
* collection properties ``pgan.build_id``, ``pgan.model_fingerprint`` and ``pgan.dim`` tie it to one
  index database: a collection made by another index or another model is refused, never taken over.

Rows are written with ``upsert`` (idempotent by id) inside the SQLite transaction that commits their
metadata, so a failed write commits nothing, and removed with ``delete``. A search is one round trip (the
hits carry their fields; counts are cached and refreshed by :meth:`MilvusStore.refresh`). pymilvus is
imported only when a client is made: without it the backend names the extra to install.

Example::

    build_index("gallery/", "runs/idx", checkpoint="last.pt", backend="milvus", uri="runs/gallery.db")
    GalleryIndex.open("runs/idx").search(query_embeddings, topk=5, camera=3)
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from pgan.errors import IndexMismatchError, PganError, StaleVectorsError
from pgan.index import records
from pgan.index.vector_store import Record, SearchFilter, VectorStore

log = logging.getLogger(__name__)

__all__ = ["MilvusStore", "claim", "collection_properties", "connect", "filter_expression", "int_field",
           "item_fields", "milvus_errors", "parse_index_type", "settings"]

SERVER_SCHEMES = ("http", "https", "tcp", "grpc", "unix")
CONNECT_TIMEOUT_S = 10.0
NO_VALUE = -(2**62)  # an INT64 field without a value (no nullable fields in Milvus 2.3; -2**63 will not parse)
TEXT_CHARS = 4096
CHUNK = 512  # rows per upsert
FILTER_FIELDS = ("camera", "vehicle_id", "ts")
TEXT_FIELDS = ("path", "timestamp", "boxes")
MAX_TOPK = 16384  # Milvus's limit on one search's results
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
INSTALL = "pip install 'pgan[milvus]' (pymilvus, and milvus-lite for a local .db file)"


def parse_index_type(index_type: str) -> tuple[str, dict]:
    """``"HNSW32"`` / ``"HNSW32,Flat"`` -> ``("HNSW", {"M": 32})``; ``"Flat"`` -> ``("FLAT", {})``;
    ``"IVF1024"`` / ``"IVF1024,Flat"`` -> ``("IVF_FLAT", {"nlist": 1024})``; ``"DiskANN"`` -> ``("DISKANN", {})``
    (a graph on the server's disk, where the server supports it)."""
    kind = index_type.strip().upper().removesuffix(",FLAT")
    if kind == "FLAT":
        return "FLAT", {}
    if kind == "DISKANN":
        return "DISKANN", {}
    m = re.fullmatch(r"IVF(\d+)", kind)
    if m is not None:
        return "IVF_FLAT", {"nlist": int(m.group(1))}
    m = re.fullmatch(r"HNSW(\d+)?", kind)
    if m is None:
        raise PganError(f"index type {index_type!r} is not one the milvus backend builds: use 'HNSW32' "
                        f"(HNSW, M=32; 'auto'), 'HNSW<M>', 'IVF<nlist>', 'DiskANN' or 'Flat' (exact)")
    return "HNSW", {"M": int(m.group(1) or 32)}


def search_params(kind: str, k: int, params: dict) -> dict:
    """Milvus search parameters for an index ``kind`` (``ef``, ``nprobe`` or ``search_list``)."""
    extra = {"HNSW": {"ef": max(k, int(params.get("efSearch", 128)))},
             "IVF_FLAT": {"nprobe": int(params.get("nprobe", 32))},
             "DISKANN": {"search_list": max(k, int(params.get("efSearch", 128)))}}.get(kind, {})
    return {"metric_type": "IP", "params": extra}


def normalise_uri(uri: str) -> str:
    """A server URI as given; a Milvus Lite path made absolute (it must end in ``.db``)."""
    if urlparse(uri).scheme.lower() in SERVER_SCHEMES:
        return uri
    if not uri.endswith(".db"):
        raise PganError(f"--uri {uri!r} is neither a Milvus server (http://host:19530) nor a Milvus Lite "
                        f"file (a path ending in .db)")
    return str(Path(uri).expanduser().resolve())


def settings(path: Path, uri: str | None, collection: str | None, index_type: str) -> dict[str, str]:
    """The meta an index with the milvus backend records: ``milvus_uri`` and ``milvus_collection``
    (default ``pgan_<folder name>``), checked (one line each) before anything is written."""
    if not uri:
        raise PganError("--backend milvus needs --uri: a Milvus Lite file (gallery.db) or a Milvus server "
                        "(http://host:19530)")
    parse_index_type(index_type)
    if collection is None:
        collection = "pgan_" + re.sub(r"\W", "_", Path(path).resolve().name, flags=re.ASCII)[:250]
    if not NAME.match(collection):
        raise PganError(f"--collection {collection!r} is not a Milvus collection name (letters, digits and "
                        f"underscores, not starting with a digit, at most 255)")
    return {"milvus_uri": normalise_uri(uri), "milvus_collection": collection}


@contextmanager
def milvus_errors(uri: str, what: str) -> Iterator[None]:
    """Milvus's exceptions as one-line :class:`PganError` s naming the URI and the operation."""
    from pymilvus.exceptions import MilvusException

    try:
        yield
    except MilvusException as exc:
        raise PganError(f"Milvus at {uri}: {what} failed: {getattr(exc, 'message', None) or exc}") from None


def connect(uri: str, create: bool = False) -> Any:
    """A ``MilvusClient`` for ``uri`` (one line when pymilvus is missing or the URI cannot be reached);
    ``create`` makes a Lite file's folder first."""
    try:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException
    except ImportError:
        raise PganError(f"the milvus backend needs pymilvus: {INSTALL}") from None
    logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # its failures reach the user as PganError
    lite = urlparse(uri).scheme.lower() not in SERVER_SCHEMES
    if lite and create:
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        return MilvusClient(uri=uri, timeout=CONNECT_TIMEOUT_S)
    except MilvusException as exc:
        message = getattr(exc, "message", None) or str(exc)
        if lite and "milvus-lite is required" in message:
            raise PganError(f"a local Milvus file needs milvus-lite: {INSTALL}") from None
        what = "open the Milvus Lite file" if lite else "reach the Milvus server"
        raise PganError(f"cannot {what} {uri}: {message}") from None


def collection_properties(client: Any, uri: str, collection: str) -> dict[str, str]:
    with milvus_errors(uri, f"describing collection {collection}"):
        props = client.describe_collection(collection).get("properties") or {}
    return {k.removeprefix("pgan."): str(v) for k, v in props.items() if k.startswith("pgan.")}


def _foreign(owner: dict[str, str], uri: str, collection: str, fingerprint: str, dim: int,
             build_id: str | None) -> PganError | None:
    """Why the collection is not this index's (None: it is)."""
    where = f"Milvus collection {collection} at {uri}"
    if "build_id" not in owner:
        return PganError(f"{where} was not made by pgan; choose another --collection")
    if owner.get("model_fingerprint") != fingerprint or owner.get("dim") != str(dim):
        return IndexMismatchError(f"{where} holds {owner.get('dim')}-d embeddings of model "
                                  f"{owner.get('model_fingerprint')}; this index's model is {fingerprint} "
                                  f"({dim}-d); choose another --collection")
    if owner["build_id"] != build_id:
        return StaleVectorsError(f"{where} belongs to another index (build {owner['build_id'][:8]}); choose "
                                 f"another --collection, or drop it if that index is gone")
    return None


def claim(meta: dict[str, str], fingerprint: str, dim: int) -> None:
    """Check, before a new index database is written, that its collection is free: reachable, and not
    there already (a collection of another index or model is never taken over)."""
    uri, collection = meta["milvus_uri"], meta["milvus_collection"]
    client = connect(uri, create=True)
    try:
        with milvus_errors(uri, "listing collections"):
            exists = client.has_collection(collection)
        if exists:
            owner = collection_properties(client, uri, collection)
            raise _foreign(owner, uri, collection, fingerprint, dim, None) or \
                PganError(f"Milvus collection {collection} at {uri} exists already")
    finally:
        client.close()


def filter_expression(where: SearchFilter) -> str:
    """The Milvus boolean expression of a :class:`SearchFilter` over the INT64 fields (``""``: no filter)."""
    parts = []
    if where.camera is not None:
        parts.append(f"camera == {int(where.camera)}")
    if where.exclude_camera is not None:
        parts.append(f"camera != {int(where.exclude_camera)}")
    if where.vehicle_id is not None:
        parts.append(f"vehicle_id == {int(where.vehicle_id)}")
    if where.timed:
        parts.append(f"ts != {NO_VALUE}")
    if where.since is not None:
        parts.append(f"ts >= {int(where.since)}")
    if where.until is not None:
        parts.append(f"ts <= {int(where.until)}")
    return " and ".join(parts)


def wait_indexed(client: Any, uri: str, collection: str, timeout_s: float = 1800.0) -> None:
    """Return once the server has indexed every flushed row of the vector field (searches over rows
    not yet indexed are brute force: a finished build should not leave them), or after ``timeout_s``."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        with milvus_errors(uri, f"describing the index of {collection}"):
            pending = int(client.describe_index(collection, "vector").get("pending_index_rows", 0) or 0)
        if pending == 0:
            return
        if time.monotonic() > deadline:
            log.warning("Milvus at %s: %d rows of %s still being indexed; searches cover them by brute force "
                        "until then", uri, pending, collection)
            return
        time.sleep(1.0)


def scalar_indexes(client: Any, uri: str, collection: str) -> None:
    """Sorted scalar indexes on the filter fields (a server that lacks them filters without)."""
    for name in FILTER_FIELDS:
        try:
            scalar = client.prepare_index_params()
            scalar.add_index(field_name=name, index_type="STL_SORT", index_name=f"{name}_sorted")
            client.create_index(collection, scalar, sync=False)
        except Exception as exc:  # noqa: BLE001 (an optimisation only)
            log.info("Milvus at %s: no scalar index on %s.%s (%s)", uri, collection, name, exc)


def int_field(value: int | None) -> int:
    return NO_VALUE if value is None else int(value)


def item_fields(item: Any) -> dict:
    """A gallery item's scalar fields as a collection row holds them (INT64 ids and time, capped text)."""
    return {"camera": int_field(item.camera), "vehicle_id": int_field(item.vehicle_id),
            "ts": int_field(records.time_value(item.timestamp)), "path": item.path[:TEXT_CHARS],
            "timestamp": (item.timestamp or "")[:TEXT_CHARS], "boxes": json.dumps(item.boxes)[:TEXT_CHARS]}


class MilvusStore(VectorStore):
    """The index's vectors in a Milvus collection (see the module docstring)."""

    backend = "milvus"

    def __init__(self, record: Record) -> None:
        self.record = record
        self.uri = record.meta["milvus_uri"]
        self.collection = record.meta["milvus_collection"]
        self._client: Any = None
        self._ready = False  # the collection was checked to be this index's, and loaded
        self._seen = -1  # the cached count (-1: count on next use)

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = connect(self.uri, create=not self.record.readonly)
        return self._client

    def describe(self) -> dict:
        return {"backend": self.backend, "uri": self.uri, "collection": self.collection}

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _exists(self) -> bool:
        with milvus_errors(self.uri, "listing collections"):
            return bool(self.client.has_collection(self.collection))

    def _problem(self) -> PganError | None:
        """Why the collection cannot serve this index (absent, another index's or model's), or None."""
        if not self._exists():
            return PganError(f"index {self.record.path} has no Milvus collection {self.collection} at {self.uri} "
                             f"yet: its build was interrupted; rerun 'pgan index build' to finish it")
        rec = self.record
        return _foreign(collection_properties(self.client, self.uri, self.collection), self.uri, self.collection,
                        rec.model_fingerprint, rec.dim, rec.build_id)

    def check(self) -> None:
        problem = self._problem() if self._exists() else None
        if problem is not None:
            raise problem

    def _count(self) -> int:
        with milvus_errors(self.uri, f"counting {self.collection}"):
            rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _ensure_ready(self) -> None:
        """Check the collection is this index's and load it (a server does not load implicitly)."""
        if self._ready:
            return
        problem = self._problem()
        if problem is not None:
            raise problem
        with milvus_errors(self.uri, f"loading {self.collection}"):
            self.client.load_collection(self.collection)
        self._ready = True

    def status(self) -> tuple[int, str | None]:
        try:
            problem = self._problem()
            if problem is not None:
                return 0, str(problem)
            self._ensure_ready()
            return self._count(), None
        except PganError as exc:
            return 0, str(exc)

    # --- writing (inside the record's write transaction) -----------------------------------------
    def _create(self) -> None:
        from pymilvus import DataType, MilvusClient

        rec = self.record
        kind, build = parse_index_type(rec.index_type)
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=rec.dim)
        for name in FILTER_FIELDS:
            schema.add_field(name, DataType.INT64)
        for name in TEXT_FIELDS:
            schema.add_field(name, DataType.VARCHAR, max_length=TEXT_CHARS)
        index = self.client.prepare_index_params()
        if kind == "HNSW":
            build = {**build, "efConstruction": int(rec.params["efConstruction"])}
        index.add_index(field_name="vector", index_type=kind, metric_type="IP", params=build)
        props = {"pgan.build_id": rec.build_id, "pgan.model_fingerprint": rec.model_fingerprint,
                 "pgan.dim": str(rec.dim)}
        with milvus_errors(self.uri, f"creating collection {self.collection}"):
            self.client.create_collection(self.collection, schema=schema, consistency_level="Bounded",
                                          properties=props)
            # The collection is empty: nothing to wait for (Milvus Lite cannot answer the wait's clock call).
            self.client.create_index(self.collection, index, sync=False)
        scalar_indexes(self.client, self.uri, self.collection)
        with milvus_errors(self.uri, f"loading {self.collection}"):
            self.client.load_collection(self.collection)
        self._ready = True

    def add(self, ids: list[int], vectors: np.ndarray, items: list) -> None:
        if not ids:
            return
        if not self._exists():
            self._create()
        else:
            self._ensure_ready()  # never writes into another index's collection
        data = [{"id": int(i), "vector": v.tolist(), **item_fields(it)} for i, v, it in zip(ids, vectors, items)]
        with milvus_errors(self.uri, f"writing to {self.collection}"):
            for j in range(0, len(data), CHUNK):
                self.client.upsert(self.collection, data[j:j + CHUNK])
        self._seen = -1

    def remove(self, ids: list[int]) -> None:
        self._ensure_ready()
        with milvus_errors(self.uri, f"deleting from {self.collection}"):
            for j in range(0, len(ids), CHUNK):
                self.client.delete(self.collection, ids=[int(i) for i in ids[j:j + CHUNK]])
        self._seen = -1

    def vector(self, image_id: int) -> np.ndarray:
        self._ensure_ready()
        with milvus_errors(self.uri, f"reading {self.collection}"):
            rows = self.client.get(self.collection, ids=[int(image_id)], output_fields=["vector"])
        if not rows:
            raise KeyError(image_id)
        return np.asarray(rows[0]["vector"], dtype=np.float32)

    def finalize(self) -> int:
        rec = self.record
        if not self._exists():
            self._create()
        self._ensure_ready()
        with milvus_errors(self.uri, f"flushing {self.collection}"):
            self.client.flush(self.collection) if hasattr(self.client, "flush") else None
        wait_indexed(self.client, self.uri, self.collection)
        n = self._count()
        self._seen = n
        rec.set_meta(milvus_rows=str(n))
        return n

    # --- reading ------------------------------------------------------------------------------
    def refresh(self, wait: bool = True) -> bool:
        """Searches see a writer's rows as soon as Milvus makes them visible; True when the count changed
        since the last look (the first look checks that the collection belongs to this index)."""
        self._ensure_ready()
        n = self._count()
        changed, self._seen = n != self._seen, n
        return changed

    def searchable(self) -> int:
        """The item count, cached: one ``count(*)`` on first use and after :meth:`refresh` or a write."""
        if self._seen < 0:
            self._ensure_ready()
            self._seen = self._count()
        return self._seen

    def search(self, queries: np.ndarray, k: int, where: SearchFilter) -> list[list[tuple[float, int]]]:
        self._ensure_ready()
        if k > MAX_TOPK:
            raise PganError(f"the milvus backend returns at most {MAX_TOPK} results per query, not {k}")
        kind, _ = parse_index_type(self.record.index_type)
        params = search_params(kind, k, self.record.params)
        with milvus_errors(self.uri, f"searching {self.collection}"):
            found = self.client.search(self.collection, data=[q.tolist() for q in queries], limit=k,
                                       filter=filter_expression(where), anns_field="vector",
                                       search_params=params, output_fields=["id"])
        return [[(float(h["distance"]), int(h["id"])) for h in hits] for hits in found]
