"""Response models of the HTTP API (they generate the OpenAPI schema at ``/docs``).

The search routes answer the same JSON built as plain dicts (:mod:`pgan.serve.responses`), not through
these models: keep the two in step (``tests/test_serve_json.py`` checks them against each other)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Box(BaseModel):
    """A part box in the image's original pixels."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float = 1.0
    label: str = "part"


class Query(BaseModel):
    image_id: int | None = None  # set when the query was a gallery image
    width: int
    height: int
    boxes: list[Box]


class Result(BaseModel):
    rank: int
    score: float  # cosine similarity, higher is closer
    image_id: int
    name: str  # the gallery file's name (never its server path)
    camera: int | str | None = None
    vehicle_id: int | str | None = None
    timestamp: Any = None
    width: int | None = None
    height: int | None = None
    boxes: list[Box] = []


class CameraGroup(BaseModel):
    """The sightings of one camera: its results in time order (those without a timestamp last, by rank)."""

    camera: int | str | None = None  # None: results whose camera is not known
    count: int
    best_score: float
    first_seen: str | None = None  # the earliest timestamp of the group (None when none has one)
    last_seen: str | None = None
    results: list[Result]


class SightingsView(BaseModel):
    """Where and when the vehicle was seen: the results scoring at least ``min_score``, grouped by camera,
    cameras by best score (see :mod:`pgan.index.sightings`)."""

    min_score: float
    below_min_score: int  # results left out as unlikely matches
    cameras: list[CameraGroup]


class SearchResponse(BaseModel):
    query: Query
    results: list[Result]
    took_ms: float
    sightings: SightingsView | None = Field(None, description="only with group=camera")


class Health(BaseModel):
    status: str  # "ok", or why not (answered with 503)
    gallery_size: int  # items searches can return now
    worker_alive: bool = True  # the inference thread runs


class Info(BaseModel):
    model_fingerprint: str
    checkpoint: str
    embedding_dim: int
    gallery_size: int
    index_type: str
    upload_parts: str = "none"  # where the part boxes of an uploaded photo come from
    upload_parts_fallback: bool = False  # True: the model has no source for them and proposals stand in
    runtime: str = "torch"  # what runs the model: "torch", "onnx fp32" or "onnx int8"
    warnings: list[str] = []
    limits: dict[str, int]
    inference: dict[str, int]


class Error(BaseModel):
    error: str
