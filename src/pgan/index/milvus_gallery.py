"""A gallery kept entirely in a Milvus collection, named by a handle: ``milvus://host:port/collection``.

No local folder and no per-item data on the machine: the collection is the record. Each item is one
row (``id`` assigned by Milvus, ``vector``, ``camera``, ``vehicle_id``, ``ts``, ``path``, ``timestamp``,
``boxes``; see :mod:`pgan.index.milvus`), and the index settings (dimension, model fingerprint,
checkpoint, part setting, index type, search parameters) are collection properties ``pgan.*``. Any
number of machines can build, add, remove and serve with the same handle; a search is one round trip
that returns each hit's fields. :class:`MilvusGallery` answers what :class:`pgan.index.GalleryIndex`
answers, and ``GalleryIndex.open`` / ``create`` return one for a handle.

Two writers adding the same path at the same moment can both insert it (the check for held paths is a
query, not a lock); ids never collide.

Example::

    build_index("gallery/", "milvus://127.0.0.1:19530/cars", checkpoint="last.pt")
    GalleryIndex.open("milvus://127.0.0.1:19530/cars").search(query_embeddings, topk=5, camera=3)
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from pgan.errors import IndexMismatchError, PganError
from pgan.index import milvus as mv
from pgan.index import records
from pgan.index.records import GalleryItem, Hit
from pgan.index.vector_store import SearchFilter, check_queries

log = logging.getLogger(__name__)

__all__ = ["HANDLE", "MilvusGallery", "is_handle"]

HANDLE = re.compile(r"^milvus://([^/\s]+)/([A-Za-z_][A-Za-z0-9_]{0,254})$")
FIELDS = ["id", "camera", "vehicle_id", "path", "timestamp", "boxes"]


def is_handle(index: Any) -> bool:
    return isinstance(index, str) and index.startswith("milvus://")


def parse(handle: str) -> tuple[str, str]:
    """``milvus://host:port/collection`` -> ``("http://host:port", "collection")`` (one line when malformed)."""
    m = HANDLE.match(handle)
    if m is None:
        raise PganError(f"index handle {handle!r} is not milvus://HOST:PORT/COLLECTION (a collection name is "
                        f"letters, digits and underscores)")
    return f"http://{m.group(1)}", m.group(2)


class MilvusGallery:
    """The gallery of one collection (see the module docstring)."""

    backend = "milvus"

    def __init__(self, handle: str, client: Any, meta: dict[str, str], readonly: bool) -> None:
        self.handle, self.client, self.meta, self.readonly = handle, client, meta, readonly
        self.uri, self.collection = parse(handle)
        self.path = handle  # what messages and reports name
        self.params = json.loads(meta.get("params", "{}"))
        self.auto_refresh = True
        self._count = -1

    # --- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, handle: str, readonly: bool = True) -> MilvusGallery:
        uri, collection = parse(handle)
        client = mv.connect(uri)
        with mv.milvus_errors(uri, "listing collections"):
            exists = client.has_collection(collection)
        if not exists:
            client.close()
            raise PganError(f"index {handle} does not exist (build one with 'pgan index build --out {handle}')")
        meta = mv.collection_properties(client, uri, collection)
        if "handle" not in meta:
            client.close()
            raise PganError(f"Milvus collection {collection} at {uri} was not made as a pgan gallery handle")
        gallery = cls(handle, client, meta, readonly)
        with mv.milvus_errors(uri, f"loading {collection}"):
            client.load_collection(collection)
        return gallery

    @classmethod
    def create(cls, handle: str, dim: int, model_fingerprint: str, checkpoint: str | Path,
               index_type: str = "HNSW32", params: dict | None = None, **extra: Any) -> MilvusGallery:
        """A new gallery collection, or the existing one (a resumed build) after checking its model and type."""
        from pymilvus import DataType, MilvusClient

        uri, collection = parse(handle)
        kind, build = mv.parse_index_type(index_type)
        client = mv.connect(uri)
        with mv.milvus_errors(uri, "listing collections"):
            exists = client.has_collection(collection)
        if exists:
            client.close()
            gallery = cls.open(handle, readonly=False)
            gallery.check_model(model_fingerprint, dim)
            if gallery.index_type != index_type:
                raise PganError(f"{handle} was built as {gallery.index_type!r}, not {index_type!r}")
            return gallery
        params = {**mv_default_params(), **(params or {})}
        schema = MilvusClient.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        for name in mv.FILTER_FIELDS:
            schema.add_field(name, DataType.INT64)
        for name in mv.TEXT_FIELDS:
            schema.add_field(name, DataType.VARCHAR, max_length=mv.TEXT_CHARS)
        index = client.prepare_index_params()
        if kind == "HNSW":
            build = {**build, "efConstruction": int(params["efConstruction"])}
        index.add_index(field_name="vector", index_type=kind, metric_type="IP", params=build)
        meta = {"handle": "1", "dim": str(dim), "index_type": index_type, "params": json.dumps(params),
                "model_fingerprint": model_fingerprint, "build_id": uuid.uuid4().hex, "metric": "inner_product",
                "checkpoint": str(Path(checkpoint).resolve()), "created": records.now(),
                **{k: str(v) for k, v in extra.items()}}
        with mv.milvus_errors(uri, f"creating collection {collection}"):
            client.create_collection(collection, schema=schema, consistency_level="Bounded",
                                     properties={f"pgan.{k}": v for k, v in meta.items()})
            client.create_index(collection, index, sync=False)
            mv.scalar_indexes(client, uri, collection)
            client.load_collection(collection)
        gallery = cls(handle, client, meta, readonly=False)
        return gallery

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> MilvusGallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- properties ----------------------------------------------------------------------------
    dim = property(lambda self: int(self.meta["dim"]))
    index_type = property(lambda self: self.meta["index_type"])
    model_fingerprint = property(lambda self: self.meta["model_fingerprint"])
    checkpoint = property(lambda self: Path(self.meta["checkpoint"]))
    build_id = property(lambda self: self.meta.get("build_id", ""))

    def check_model(self, fingerprint: str, dim: int | None = None) -> None:
        if (dim is not None and dim != self.dim) or fingerprint != self.model_fingerprint:
            raise IndexMismatchError(f"index {self.handle} holds {self.dim}-d embeddings of model "
                                     f"{self.model_fingerprint}; this model is {fingerprint}")

    def __len__(self) -> int:
        return self.searchable()

    def searchable(self) -> int:
        if self._count < 0:
            with mv.milvus_errors(self.uri, f"counting {self.collection}"):
                rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
            self._count = int(rows[0]["count(*)"])
        return self._count

    def refresh(self, wait: bool = True) -> bool:
        before, self._count = self._count, -1
        return self.searchable() != before

    def info(self) -> dict:
        self.refresh()
        n = self.searchable()
        return {"path": self.handle, "size": n, "searchable": n, "complete": True, "dim": self.dim,
                "index_type": self.index_type, "params": self.params, "backend": "milvus", "uri": self.uri,
                "collection": self.collection, "local_bytes": 0,
                **{k: self.meta[k] for k in ("model_fingerprint", "checkpoint", "build_id", "created", "parts",
                                             "runtime", "flip", "source") if k in self.meta}}

    def skipped(self) -> list[tuple[str, str]]:
        return []  # a handle keeps no log of unreadable files (the build reports them)

    # --- items -------------------------------------------------------------------------------
    def _query(self, expr: str, fields: list[str], limit: int | None = None) -> list[dict]:
        with mv.milvus_errors(self.uri, f"querying {self.collection}"):
            return self.client.query(self.collection, filter=expr, output_fields=fields,
                                     **({"limit": limit} if limit else {}))

    def get(self, image_id: int) -> Hit | None:
        rows = self._query(f"id == {int(image_id)}", FIELDS)
        return _hit(rows[0]) if rows else None

    def vector(self, image_id: int) -> np.ndarray:
        rows = self._query(f"id == {int(image_id)}", ["vector"])
        if not rows:
            raise KeyError(image_id)
        return np.asarray(rows[0]["vector"], dtype=np.float32)

    def image_path(self, image_id: int) -> Path:
        hit = self.get(image_id)
        if hit is None:
            raise KeyError(image_id)
        return Path(hit.path)

    def paths(self, among: list[str] | None = None) -> set[str]:
        """Paths the gallery holds (of ``among`` when given: one query per 512)."""
        if among is None:
            with mv.milvus_errors(self.uri, f"reading {self.collection}"):
                it = self.client.query_iterator(self.collection, filter="", output_fields=["path"],
                                                batch_size=4096)
                found = set()
                while batch := it.next():
                    found |= {r["path"] for r in batch}
                it.close()
            return found
        found = set()
        for j in range(0, len(among), 512):
            found |= {r["path"] for r in self._query(f"path in {json.dumps(among[j:j + 512])}", ["path"])}
        return found

    # --- writing ------------------------------------------------------------------------------
    def add_batch(self, items: list[GalleryItem], vectors: np.ndarray,
                  skipped: list[tuple[str, str]] = ()) -> list[int]:
        if self.readonly:
            raise PganError(f"index {self.handle} is open read-only")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape != (len(items), self.dim):
            raise IndexMismatchError(f"expected {len(items)} x {self.dim} vectors, got {vectors.shape}")
        held = self.paths([it.path for it in items]) if items else set()
        keep = [j for j, it in enumerate(items) if it.path not in held]
        data = [{"vector": vectors[j].tolist(), **mv.item_fields(items[j])} for j in keep]
        ids: list[int] = []
        with mv.milvus_errors(self.uri, f"writing to {self.collection}"):
            for j in range(0, len(data), mv.CHUNK):
                ids += [int(i) for i in self.client.insert(self.collection, data[j:j + mv.CHUNK])["ids"]]
        self._count = -1
        return ids

    def remove(self, paths: list[str] = (), ids: list[int] = (), before: str | None = None) -> list[int]:
        if self.readonly:
            raise PganError(f"index {self.handle} is open read-only")
        wanted = {int(i) for i in ids}
        found = {int(r["id"]) for r in self._query(f"id in {sorted(wanted)}", ["id"])} if wanted else set()
        if wanted - found:
            raise PganError(f"index {self.handle} holds no item with id {min(wanted - found)}; "
                            f"nothing was removed")
        for p in paths:
            rows = self._query(f"path in {json.dumps([str(p), str(Path(p).resolve())])}", ["id"])
            if not rows:
                raise PganError(f"index {self.handle} holds no image {p}; nothing was removed")
            found |= {int(r["id"]) for r in rows}
        if before is not None:
            cut = records.parse_time(before, "--before")
            found |= {int(r["id"]) for r in self._query(f"ts != {mv.NO_VALUE} and ts < {cut}", ["id"])}
        gone = sorted(found)
        with mv.milvus_errors(self.uri, f"deleting from {self.collection}"):
            for j in range(0, len(gone), mv.CHUNK):
                self.client.delete(self.collection, ids=gone[j:j + mv.CHUNK])
        self._count = -1
        self._wait_gone(gone)
        return gone

    def _wait_gone(self, ids: list[int], timeout_s: float = 30.0) -> None:
        """Return once searches at the collection's (Bounded) consistency no longer see ``ids``, so a
        removal is never answered after this returns, by any process."""
        import time

        deadline = time.monotonic() + timeout_s
        probe = ids[:512]
        while probe and self._query(f"id in {probe}", ["id"]):
            if time.monotonic() > deadline:
                log.warning("Milvus at %s: %d removed items still visible after %.0f s", self.uri, len(probe),
                            timeout_s)
                return
            time.sleep(0.2)

    def finalize(self) -> int:
        with mv.milvus_errors(self.uri, f"flushing {self.collection}"):
            self.client.flush(self.collection)
        mv.wait_indexed(self.client, self.uri, self.collection)
        self.refresh()
        return self.searchable()

    def compact(self) -> int:
        with mv.milvus_errors(self.uri, f"compacting {self.collection}"):
            self.client.compact(self.collection)
        return self.searchable()

    # --- search -------------------------------------------------------------------------------
    def search(self, embeddings: np.ndarray, topk: int, camera: int | None = None,
               exclude_camera: int | None = None, since: str | int | None = None,
               until: str | int | None = None, vehicle_id: int | None = None) -> list[list[Hit]]:
        """As :meth:`pgan.index.GalleryIndex.search`: one round trip, the hits' fields included."""
        emb = check_queries(embeddings, self.dim, topk, self.handle)
        where = SearchFilter.parse(camera, exclude_camera, since, until, vehicle_id)
        kind, _ = mv.parse_index_type(self.index_type)
        params = mv.search_params(kind, topk, self.params)
        with mv.milvus_errors(self.uri, f"searching {self.collection}"):
            found = self.client.search(self.collection, data=[q.tolist() for q in emb],
                                       limit=min(topk, mv.MAX_TOPK), filter=mv.filter_expression(where),
                                       anns_field="vector", search_params=params, output_fields=FIELDS)
        return [[_hit({**h.get("entity", {}), "id": h["id"]}, rank, float(h["distance"]))
                 for rank, h in enumerate(hits, 1)] for hits in found]


def _hit(row: dict, rank: int = 0, score: float = 0.0) -> Hit:
    def value(v):
        return None if v is None or int(v) == mv.NO_VALUE else int(v)

    return Hit(rank, score, int(row["id"]), row["path"], value(row["camera"]), value(row["vehicle_id"]),
               row.get("timestamp") or None, json.loads(row.get("boxes") or "[]"))


def mv_default_params() -> dict:
    from pgan.index.vectors import DEFAULT_PARAMS

    return {k: v for k, v in DEFAULT_PARAMS.items() if k in ("efConstruction", "efSearch")}
