"""The JSON bodies of the search routes: plain dicts, encoded once to bytes.

The routes keep their pydantic models (:mod:`pgan.serve.schemas`) in ``response_model`` so ``/docs``
documents them, but answer a :class:`~starlette.responses.Response` built here, which FastAPI sends as
it is. ``dataclasses.asdict`` of each hit (a deep copy) and a validated ``Result`` / ``Box`` model per hit
and box cost about 0.7 ms of CPU per top-10 answer (FastAPI's own validation and pydantic-core's dump
are a small part of it); the dicts and one encoder call cost about a tenth of that
(``benchmarks/serve_json.py`` measures both in one run). The bodies are the models' JSON: the same keys in
the same order, numbers coerced as pydantic coerced them (box coordinates and scores are floats, ids
integers).

The encoder is ``orjson`` when installed (the ``serve`` extra), else the standard ``json`` module.

Example::

    body = search_body(query_json(None, 640, 480, boxes), [hit_json(h, s) for h, s in zip(hits, sizes)], 12.3)
    return json_response(body)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from starlette.responses import Response

try:
    import orjson
except ImportError:  # the encoder of the standard library answers the same JSON
    orjson = None

__all__ = ["ENCODER", "batch_body", "box_json", "encode_json", "file_name", "hit_json", "json_response",
           "query_json", "search_body"]

ENCODER = "orjson" if orjson is not None else "json"
_BOX_KEYS = ("x1", "y1", "x2", "y2", "score", "label")
_SEPARATORS = os.sep + (os.altsep or "")


def box_json(box: Any) -> dict:
    """A part box as given by the extractor or the index (a PartBox, a list or a dict) -> the fields of
    :class:`~pgan.serve.schemas.Box` (coordinates and score as floats; score 1.0 and label ``"part"``
    when the box has none)."""
    if isinstance(box, (list, tuple)):  # the index's boxes: [x1, y1, x2, y2, score, label(, role)]
        n = len(box)
        return {"x1": float(box[0]), "y1": float(box[1]), "x2": float(box[2]), "y2": float(box[3]),
                "score": float(box[4]) if n > 4 else 1.0, "label": str(box[5]) if n > 5 else "part"}
    if isinstance(box, Mapping):
        d = {k: box[k] for k in _BOX_KEYS if k in box}
    elif isinstance(box, Sequence) and not isinstance(box, str):
        d = dict(zip(_BOX_KEYS, box))
    else:
        d = {k: getattr(box, k) for k in _BOX_KEYS if hasattr(box, k)}
    return {"x1": float(d["x1"]), "y1": float(d["y1"]), "x2": float(d["x2"]), "y2": float(d["y2"]),
            "score": float(d.get("score", 1.0)), "label": str(d.get("label", "part"))}


def file_name(path: Any) -> str:
    """The last component of a gallery path (``Path(path).name`` for a file's path, without building a Path)."""
    return os.path.basename(str(path).rstrip(_SEPARATORS))


def hit_json(hit: Any, size: tuple[int, int] | None) -> dict:
    """One search hit (an index ``Hit``, or a mapping with its fields) and its image's ``(width, height)``
    -> the fields of :class:`~pgan.serve.schemas.Result`: the file's name, never its server path."""
    get = hit.get if isinstance(hit, Mapping) else (lambda key: getattr(hit, key, None))
    path, image_id = get("path"), int(get("image_id"))
    w, h = size if size else (None, None)
    return {"rank": int(get("rank")), "score": float(get("score")), "image_id": image_id,
            "name": file_name(path) if path else str(image_id), "camera": get("camera"),
            "vehicle_id": get("vehicle_id"), "timestamp": get("timestamp"), "width": w, "height": h,
            "boxes": [box_json(b) for b in get("boxes") or ()]}


def query_json(image_id: int | None, width: int, height: int, boxes: Any) -> dict:
    """The ``query`` of a search answer (:class:`~pgan.serve.schemas.Query`)."""
    return {"image_id": image_id, "width": int(width), "height": int(height),
            "boxes": [box_json(b) for b in boxes or ()]}


def search_body(query: dict, results: list[dict], took_ms: float, sightings: dict | None = None) -> dict:
    """The answer of ``POST /api/search`` (:class:`~pgan.serve.schemas.SearchResponse`)."""
    return {"query": query, "results": results, "took_ms": float(took_ms), "sightings": sightings}


def batch_body(labels: list[str], results: list[list[dict]], took_ms: float) -> dict:
    """The answer of the batch routes (``BatchResponse``): one result list per query, in order."""
    return {"queries": [{"query": label, "results": r} for label, r in zip(labels, results)],
            "took_ms": float(took_ms)}


def _plain(value: Any) -> Any:
    """What the encoders do not know natively: numpy scalars and arrays, paths, sets; else a TypeError."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats as None, as pydantic writes them (the ``json`` fallback only)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def encode_json(body: Any) -> bytes:
    """``body`` as compact UTF-8 JSON (NaN and infinities as ``null``, as pydantic writes them)."""
    if orjson is not None:
        return orjson.dumps(body, default=_plain)
    try:
        text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_plain)
    except ValueError:  # a NaN somewhere: rare, so only then walk the body
        text = json.dumps(_finite(body), ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=_plain)
    return text.encode("utf-8")


def json_response(body: Any, status_code: int = 200) -> Response:
    """``body`` encoded once, sent as it is (FastAPI neither validates nor re-encodes a Response)."""
    return Response(encode_json(body), status_code=status_code, media_type="application/json")
