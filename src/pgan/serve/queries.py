"""Search filters and batch queries of the HTTP API.

* :func:`parse_filters`: the filter form fields of ``POST /api/search`` (``camera``, ``exclude_camera``,
  ``vehicle_id``, ``since``, ``until``) checked into keyword arguments of ``GalleryIndex.search``; a
  malformed value is a 422 with one line, before anything is searched.
* ``POST /api/search/batch`` (JSON): several queries in one request, as raw vectors (``vectors``, each
  the index's dimension; L2-normalised here) and / or gallery ids (``image_ids``, their stored
  vectors), with ``topk`` and the same filters; answers one result list per query, in order. At most
  :data:`MAX_BATCH` queries.
* ``POST /api/search/images`` (multipart): several photos in ``images``, embedded in one batch by the
  inference thread, with the same form fields as ``/api/search``.

Example::

    curl -X POST localhost:8000/api/search/batch -H 'Content-Type: application/json' \\
         -d '{"image_ids": [3, 17], "topk": 5, "exclude_camera": 2}'
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from pgan.errors import PganError
from pgan.index.vector_store import SearchFilter
from pgan.serve.responses import batch_body, json_response

__all__ = ["BatchRequest", "BatchResponse", "MAX_BATCH", "parse_filters", "register"]

MAX_BATCH = 64
_INT_MAX = 2**31 - 1


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt filter is refused, not ignored

    vectors: list[list[float]] = Field(default_factory=list, description="query embeddings (index dimension)")
    image_ids: list[int] = Field(default_factory=list, description="gallery ids: search with their vectors")
    topk: int | None = Field(None, description="results per query")
    camera: int | None = Field(None, description="only results from this camera id")
    exclude_camera: int | None = Field(None, description="no results from this camera id")
    vehicle_id: int | None = Field(None, description="only results of this vehicle id")
    since: str | None = Field(None, description="only results at or after this time (digits or ISO 8601)")
    until: str | None = Field(None, description="only results at or before this time")


class QueryResults(BaseModel):
    query: str  # "vector 0", "image_id 17", or the photo's file name
    results: list[Any]  # each a ``Result`` of pgan.serve.schemas


class BatchResponse(BaseModel):
    queries: list[QueryResults]
    took_ms: float


def _int_field(raw: Any, field: str, lo: int = 0, hi: int = _INT_MAX) -> int | None:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise HTTPException(422, f"{field} must be an integer, got {str(raw)[:40]!r}") from None
    if not lo <= value <= hi:
        raise HTTPException(422, f"{field} must be between {lo} and {hi}, got {value}")
    return value


def parse_filters(camera: Any = None, exclude_camera: Any = None, vehicle_id: Any = None, since: Any = None,
                  until: Any = None) -> dict:
    """Filter fields as ``GalleryIndex.search`` keyword arguments (only those given); 422 when malformed."""
    out = {"camera": _int_field(camera, "camera"), "exclude_camera": _int_field(exclude_camera, "exclude_camera"),
           "vehicle_id": _int_field(vehicle_id, "vehicle_id", -(2**62), 2**62),
           "since": since.strip() if isinstance(since, str) and since.strip() else None,
           "until": until.strip() if isinstance(until, str) and until.strip() else None}
    try:
        SearchFilter.parse(**out)
    except PganError as exc:
        raise HTTPException(422, str(exc)) from None
    return {k: v for k, v in out.items() if v is not None}


SEARCH_FIELDS = {"image", "image_id", "topk", "camera", "exclude_camera", "vehicle_id", "since", "until", "group",
                 "min_score"}
IMAGES_FIELDS = {"images", "topk", "camera", "exclude_camera", "vehicle_id", "since", "until"}


async def refuse_unknown_fields(request: Any, allowed: set[str]) -> None:
    """422 naming the first form field the route does not know (a misspelt filter would otherwise be
    ignored and the search answered unfiltered)."""
    unknown = sorted(set((await request.form()).keys()) - allowed)
    if unknown:
        raise HTTPException(422, f"unknown field {unknown[0]!r}; the fields are {', '.join(sorted(allowed))}")


def register(api: APIRouter, state: Any, settings: Any, admit: Any) -> None:
    """Add the batch routes to ``api`` (``state.results(hits)`` turns a query's hits into ``Result`` dicts)."""
    index = state.index

    async def answer(labels: list[str], vectors: np.ndarray, topk: Any, where: dict, start: float) -> Any:
        k = _int_field(topk, "topk", 1, settings.max_topk) or settings.default_topk
        found = await state.lookup(state.search_many, vectors, k, where) if len(vectors) else []
        results = [await state.results(hits) for hits in found]
        return json_response(batch_body(labels, results, round(1000 * (time.perf_counter() - start), 2)))

    @api.post("/search/batch", response_model=BatchResponse, dependencies=[Depends(admit)])
    async def search_batch(body: BatchRequest) -> Any:
        start = time.perf_counter()
        count = len(body.vectors) + len(body.image_ids)
        if count == 0:
            raise HTTPException(422, "give at least one query in 'vectors' or 'image_ids'")
        if count > MAX_BATCH:
            raise HTTPException(422, f"at most {MAX_BATCH} queries per request, got {count}")
        where = parse_filters(body.camera, body.exclude_camera, body.vehicle_id, body.since, body.until)
        dim = int(getattr(index, "dim", 0) or state.extractor.embedding_dim)
        rows, labels = [], []
        for j, v in enumerate(body.vectors):
            vec = np.asarray(v, dtype=np.float32)
            norm = float(np.linalg.norm(vec)) if vec.ndim == 1 else 0.0
            if vec.shape != (dim,) or not math.isfinite(norm) or norm == 0:
                raise HTTPException(422, f"vectors[{j}] must be {dim} finite numbers, not all zero")
            rows.append(vec / norm)
            labels.append(f"vector {j}")
        for gid in body.image_ids:
            try:
                rows.append(await state.lookup(index.vector, int(gid)))
            except KeyError:
                raise HTTPException(404, f"image id {gid} is not in the gallery") from None
            labels.append(f"image_id {gid}")
        return await answer(labels, np.stack(rows), body.topk, where, start)

    @api.post("/search/images", response_model=BatchResponse, dependencies=[Depends(admit)])
    async def search_images(request: Request, images: list[UploadFile] = File(..., description="query photos"),
                            topk: str | None = Form(None, description="results per query"),
                            camera: str | None = Form(None), exclude_camera: str | None = Form(None),
                            vehicle_id: str | None = Form(None), since: str | None = Form(None),
                            until: str | None = Form(None)) -> Any:
        start = time.perf_counter()
        await refuse_unknown_fields(request, IMAGES_FIELDS)
        if len(images) > MAX_BATCH:
            raise HTTPException(422, f"at most {MAX_BATCH} photos per request, got {len(images)}")
        where = parse_filters(camera, exclude_camera, vehicle_id, since, until)
        datas = [await f.read(settings.max_upload_bytes + 1) for f in images]
        embedded = await asyncio.gather(*(state.pipeline.embed_upload(d) for d in datas))
        vectors = np.stack([e.embedding for e, _ in embedded])
        return await answer([f.filename or f"image {j}" for j, f in enumerate(images)], vectors, topk, where,
                            start)
