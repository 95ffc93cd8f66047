"""CPU per answer of building and encoding the search service's JSON: the pydantic path it had, the dicts now.

The *legacy* path is what ``pgan serve`` did up to this change, kept here to be measured and to test
the new bodies against (``tests/test_serve_json.py``): each hit turned into a dict by
``dataclasses.asdict``, then into pydantic ``Result`` / ``Box`` models, the answer a ``SearchResponse``
(or ``BatchResponse``), which FastAPI validates against the route's ``response_model`` and dumps with
pydantic-core (FastAPI's own response field, made as FastAPI makes it for a route). The *new* path is
:mod:`pgan.serve.responses`: plain dicts straight from the hits' attributes, encoded once by ``orjson``
(and, to see whether orjson pays, by the standard ``json`` module, its fallback).

Answers measured, over synthetic index hits shaped as a VeRi gallery's (file names, cameras,
timestamps, ``--parts`` part boxes per image, each ``[x1, y1, x2, y2, score, label]``):

* ``search_top10``: ``POST /api/search`` with 10 hits and the query's boxes;
* ``search_top10_sightings``: the same with ``group=camera`` (the results again, grouped by camera);
* ``batch_8x10``: ``POST /api/search/batch`` with 8 queries of 10 hits.

Each figure is ``time.process_time`` over ``--reps`` repetitions, in one process on one thread,
both paths in the same run (the ratio legacy / new is the figure to compare across machines; the
1-minute load average at the start and the end says how busy the machine was). The
HTTP server, multipart parsing and the thread hops are not in it: only what the route does between the
hits and the bytes. Writes ``docs/serve_json.json`` (``--out``) and prints a markdown table.

Usage: ``OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/serve_json.py [--reps 2000]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
from pathlib import Path
from typing import Any

import fastapi
import pydantic
from fastapi.utils import create_model_field

from pgan.index.records import Hit
from pgan.index.sightings import group_sightings
from pgan.serve import responses
from pgan.serve.queries import BatchResponse, QueryResults
from pgan.serve.schemas import Box, CameraGroup, Query, Result, SearchResponse, SightingsView
from pgan.serve.sightings import sightings_view

LABELS = ("front_light", "rear_light", "wheel", "logo", "window", "plate")


def veri_hits(k: int = 10, parts: int = 6, seed: int = 0) -> list[Hit]:
    """``k`` ranked hits as the index answers them (VeRi-like names, cameras, timestamps, part boxes)."""
    rng = random.Random(seed)
    hits = []
    for r in range(k):
        vid, cam, ts = rng.randrange(1, 777), rng.randrange(1, 21), rng.randrange(10**5, 10**6)
        boxes = [[round(rng.uniform(0, 200), 2), round(rng.uniform(0, 150), 2), round(rng.uniform(200, 400), 2),
                  round(rng.uniform(150, 300), 2), round(rng.uniform(0.3, 1.0), 4), LABELS[j % len(LABELS)]]
                 for j in range(parts)]
        path = f"/data/VeRi/image_test/{vid:04d}_c{cam:03d}_{ts:08d}_0.jpg"
        hits.append(Hit(r + 1, 0.93 - 0.031 * r + rng.uniform(0, 0.01), 10_000 + rng.randrange(40_000), path,
                        cam, vid, f"{ts:08d}", boxes))
    return hits


# -- the legacy path (pydantic models, FastAPI's response-field validation and pydantic-core JSON) --------

def _legacy_box(box: Any) -> Box:
    keys = ("x1", "y1", "x2", "y2", "score", "label")
    if isinstance(box, dict):
        return Box(**{k: box[k] for k in keys if k in box})
    if isinstance(box, (list, tuple)):
        return Box(**dict(zip(keys, box)))
    return Box(**{k: getattr(box, k) for k in keys if hasattr(box, k)})


def legacy_result(hit: Any, size: tuple[int, int] | None) -> Result:
    """``app._hit_json`` as it was: ``asdict`` of the hit, then a validated ``Result``."""
    d = hit.to_dict() if hasattr(hit, "to_dict") else dict(hit)
    path = d.pop("path", None)
    w, h = size if size else (None, None)
    return Result(rank=d["rank"], score=float(d["score"]), image_id=int(d["image_id"]),
                  name=Path(str(path)).name if path else str(d["image_id"]), camera=d.get("camera"),
                  vehicle_id=d.get("vehicle_id"), timestamp=d.get("timestamp"), width=w, height=h,
                  boxes=[_legacy_box(b) for b in d.get("boxes") or []])


def _fastapi_json(model: type, answer: Any) -> bytes:
    """What FastAPI (0.165) does with a route's return value when the route has a ``response_model``:
    validate it against the route's response field, then dump it with pydantic-core."""
    field = _FIELDS.get(model) or _FIELDS.setdefault(
        model, create_model_field(name=f"Response_{model.__name__}", type_=model, mode="serialization"))
    value, errors = field.validate(answer, {}, loc=("response",))
    assert not errors, errors
    return field.serialize_json(value, by_alias=True)


_FIELDS: dict[type, Any] = {}


def legacy_search_json(query_id: int | None, width: int, height: int, query_boxes: list, hits: list,
                       sizes: list, took_ms: float, min_score: float | None = None) -> bytes:
    """The bytes ``POST /api/search`` answered before: a ``SearchResponse`` of models, validated, dumped."""
    results = [legacy_result(h, s) for h, s in zip(hits, sizes)]
    sightings = None
    if min_score is not None:
        s = group_sightings(results, min_score)
        sightings = SightingsView(min_score=min_score, below_min_score=s.below_min_score, cameras=[
            CameraGroup(camera=c.camera, count=len(c.hits), best_score=c.best_score, first_seen=c.first_seen,
                        last_seen=c.last_seen, results=c.hits) for c in s.cameras])
    answer = SearchResponse(query=Query(image_id=query_id, width=width, height=height,
                                        boxes=[_legacy_box(b) for b in query_boxes]),
                            results=results, took_ms=took_ms, sightings=sightings)
    return _fastapi_json(SearchResponse, answer)


def legacy_batch_json(labels: list[str], found: list[list], sizes: list[list], took_ms: float) -> bytes:
    """The bytes the batch routes answered before."""
    queries = [QueryResults(query=label, results=[legacy_result(h, s) for h, s in zip(hits, sz)])
               for label, hits, sz in zip(labels, found, sizes)]
    return _fastapi_json(BatchResponse, BatchResponse(queries=queries, took_ms=took_ms))


# -- the new path ------------------------------------------------------------------------------------------

def search_dict(query_id: int | None, width: int, height: int, query_boxes: list, hits: list, sizes: list,
                took_ms: float, min_score: float | None = None) -> dict:
    """The body the route builds now (before encoding)."""
    results = [responses.hit_json(h, s) for h, s in zip(hits, sizes)]
    return responses.search_body(responses.query_json(query_id, width, height, query_boxes), results, took_ms,
                                 None if min_score is None else sightings_view(results, min_score))


def batch_dict(labels: list[str], found: list[list], sizes: list[list], took_ms: float) -> dict:
    return responses.batch_body(labels, [[responses.hit_json(h, s) for h, s in zip(hits, sz)]
                                         for hits, sz in zip(found, sizes)], took_ms)


def stdlib_json(body: Any) -> bytes:
    """The fallback encoder (no orjson), as :func:`pgan.serve.responses.encode_json` calls it."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")


def cpu_us(fn, reps: int) -> float:
    """Mean CPU microseconds of ``fn()`` over ``reps`` calls (after one warm-up call)."""
    fn()
    start = time.process_time()
    for _ in range(reps):
        fn()
    return round(1e6 * (time.process_time() - start) / reps, 1)


def measure(reps: int, parts: int) -> dict:
    hits = veri_hits(10, parts)
    sizes = [(384, 288)] * len(hits)
    qboxes = veri_hits(1, parts, seed=1)[0].boxes
    batch = [veri_hits(10, parts, seed=s) for s in range(8)]
    cases = {
        "search_top10": (lambda: legacy_search_json(None, 640, 480, qboxes, hits, sizes, 12.34),
                         lambda: search_dict(None, 640, 480, qboxes, hits, sizes, 12.34)),
        "search_top10_sightings": (lambda: legacy_search_json(None, 640, 480, qboxes, hits, sizes, 12.34, 0.5),
                                   lambda: search_dict(None, 640, 480, qboxes, hits, sizes, 12.34, 0.5)),
        "batch_8x10": (lambda: legacy_batch_json([f"image_id {j}" for j in range(8)], batch, [sizes] * 8, 12.34),
                       lambda: batch_dict([f"image_id {j}" for j in range(8)], batch, [sizes] * 8, 12.34)),
    }
    out = {}
    for name, (legacy, build) in cases.items():
        body = build()
        assert json.loads(legacy()) == json.loads(responses.encode_json(body)), name
        row = {"bytes": len(responses.encode_json(body)),
               "legacy_us": cpu_us(legacy, reps),
               "new_build_dicts_us": cpu_us(build, reps),
               "new_encode_us": cpu_us(lambda b=body: responses.encode_json(b), reps),
               "stdlib_json_encode_us": cpu_us(lambda b=body: stdlib_json(b), reps),
               "new_us": cpu_us(lambda f=build: responses.encode_json(f()), reps),
               "new_stdlib_json_us": cpu_us(lambda f=build: stdlib_json(f()), reps)}
        row["legacy_over_new"] = round(row["legacy_us"] / row["new_us"], 1)
        row["legacy_over_new_stdlib_json"] = round(row["legacy_us"] / row["new_stdlib_json_us"], 1)
        out[name] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=2000)
    ap.add_argument("--parts", type=int, default=6, help="part boxes per image")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "serve_json.json")
    args = ap.parse_args()
    load_start = round(os.getloadavg()[0], 2)
    rows = measure(args.reps, args.parts)
    try:
        import orjson
        orjson_version = orjson.__version__
    except ImportError:
        orjson_version = None
    report = {"reps": args.reps, "parts_per_image": args.parts, "encoder": responses.ENCODER,
              "cpu": "time.process_time, one process, one thread; microseconds per answer",
              "versions": {"python": platform.python_version(), "fastapi": fastapi.__version__,
                           "pydantic": pydantic.__version__, "orjson": orjson_version},
              "machine": platform.machine(), "cpu_count": os.cpu_count(),
              "load_average_1min": {"start": load_start, "end": round(os.getloadavg()[0], 2)}, "answers": rows}
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"| answer | bytes | legacy us | new us ({responses.ENCODER}) | new us (json) | legacy/new |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['bytes']} | {r['legacy_us']} | {r['new_us']} | {r['new_stdlib_json_us']} | "
              f"{r['legacy_over_new']} |")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
