"""The FastAPI application: ``create_app(index, extractor, settings)``.

Routes (``/docs`` shows them with their schemas):

* ``POST /api/search``: multipart form, the photo in ``image`` (or a gallery ``image_id``),
  ``topk`` and optional filters (``camera``, ``exclude_camera``, ``vehicle_id``, ``since``, ``until``,
  applied inside the index) -> ``{"query": ..., "results": [...]}``; with
  ``group=camera`` (and ``min_score``) also ``"sightings"``: the likely matches by camera in time order;
* ``GET /api/images/{id}[?size=N]``: a gallery image, or a JPEG thumbnail whose longer side is the
  fixed size N snaps to (``settings.thumbnail_sizes``), kept in a bounded LRU;
* ``GET /api/health``, ``GET /api/info``;
* ``POST /api/search/batch`` (JSON: raw ``vectors`` and / or ``image_ids``) and ``POST /api/search/images``
  (several photos): many queries per request (:mod:`pgan.serve.queries`);
* ``GET /``: the search page (plain HTML/CSS/JS from ``pgan/serve/static``).

Every error has a one-line JSON body ``{"error": "..."}``: a 4xx for bad input, a 503 for the
server's own state (the inference queue full, the inference thread stopped, an index or model
that cannot answer). Image ids are integers looked up in the index, never paths. A bounded number
of requests is admitted at once; their work runs off the event loop (:mod:`pgan.serve.pipeline`):
decoding and part boxes in a thread pool, the model alone on one thread (:class:`InferenceWorker`)
in batches, the index on its own thread. A search by gallery id uses the stored vector.

Hardening: ``X-Content-Type-Options: nosniff`` on every response (:mod:`pgan.serve.middleware`, with
the request-body limit), a Content-Security-Policy on the page, gallery images typed from their
decoded format, and (``settings.allowed_hosts``, set by ``pgan serve`` on a loopback bind)
Starlette's ``TrustedHostMiddleware`` against DNS rebinding.
A thread checks the index for what writers committed (``pgan index add`` / ``remove`` while serving)
and loads it; an item removed meanwhile is never answered (the index drops rows it no longer has).

Example::

    app = create_app(GalleryIndex.open("runs/index"), FeatureExtractor("runs/demo/pgan/last.pt"))
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.exceptions import HTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from pgan import __version__
from pgan.errors import PganError
from pgan.serve import queries, responses, uploads
from pgan.serve.middleware import BodyLimit, SecurityHeaders
from pgan.serve.pipeline import Pipeline
from pgan.serve.schemas import Error, Health, Info, SearchResponse
from pgan.serve.settings import ServeSettings
from pgan.serve.sightings import DEFAULT_MIN_SCORE, parse_group, sightings_view
from pgan.serve.thumbnails import UNKNOWN, ImageSizes, ThumbnailCache
from pgan.serve.uploads import BadImage, load_gallery_image, thumbnail_jpeg
from pgan.serve.worker import WorkerStopped

log = logging.getLogger(__name__)

_ID = re.compile(r"[0-9]{1,18}")
_ERRORS = {400: {"model": Error}, 401: {"model": Error}, 404: {"model": Error}, 413: {"model": Error},
           422: {"model": Error}, 503: {"model": Error}}
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


class ServerBusy(RuntimeError):
    """``settings.max_queue`` requests are in progress already (HTTP 503, Retry-After)."""


class _State:
    """What the routes share: the index, the worker, small caches."""

    def __init__(self, index: Any, extractor: Any, settings: ServeSettings) -> None:
        self.index, self.extractor, self.settings = index, extractor, settings
        self.pipeline = Pipeline(extractor, settings)
        self.worker = self.pipeline.worker
        self.active = 0  # admitted requests in progress (changed on the event loop only)
        self.refused = 0
        self.stop_reload = threading.Event()
        self.sizes = ImageSizes()
        self.thumbs = ThumbnailCache(settings.thumbnail_cache_bytes)

    def gallery_size(self) -> int:
        """Items searches can return now (the loaded snapshot's; runs on the index thread)."""
        return int(self.index.searchable()) if hasattr(self.index, "searchable") else len(self.index)

    def search(self, embedding: Any, topk: int, where: dict) -> list:
        """One query's hits; ``where``: filter keyword arguments of ``GalleryIndex.search`` (only those set)."""
        return self.search_many(embedding[None, :], topk, where)[0]

    def search_many(self, embeddings: Any, topk: int, where: dict) -> list[list]:
        return self.index.search(embeddings, min(topk, self.gallery_size()), **where)

    def watch_index(self) -> None:
        """Swap in the snapshot a writer publishes (``pgan index add`` while serving), off the worker thread."""
        while not self.stop_reload.wait(self.settings.reload_seconds):
            try:
                if self.index.refresh():
                    log.info("index snapshot reloaded: %d items searchable", self.index.searchable())
            except Exception as exc:  # the last good snapshot stays in use
                log.warning("index reload failed: %s", exc)

    async def decode(self, fn, *args) -> Any:
        """``fn(*args)`` on a preparation thread (decoding, image headers, thumbnails)."""
        return await self.pipeline.prep(fn, *args)

    async def lookup(self, fn, *args) -> Any:
        """``fn(*args)`` on the index thread (faiss, SQLite)."""
        return await self.pipeline.lookup(fn, *args)

    async def gallery_path(self, image_id: int) -> Path:
        try:
            path = Path(await self.lookup(self.index.image_path, image_id))
        except KeyError:
            raise HTTPException(404, f"image id {image_id} is not in the gallery") from None
        if not path.is_file():
            raise HTTPException(404, f"image id {image_id}: its file is missing on the server")
        return path

    def thumbnail(self, image_id: int, path: Path, side: int) -> bytes:
        """The JPEG thumbnail of a gallery image at a fixed ``side``, from the cache or made and cached."""
        jpeg = self.thumbs.get((image_id, side))
        if jpeg is None:
            img = load_gallery_image(path, self.settings, f"gallery image {image_id}", draft=side)
            jpeg = self.thumbs.put((image_id, side), thumbnail_jpeg(img, side))
        return jpeg

    def size_of(self, image_id: int, path: Path | None) -> tuple[int, int] | None:
        if path is None:
            return None
        size = self.sizes.get(image_id)
        if size is UNKNOWN:
            try:
                size = uploads.image_size(path)
            except (OSError, ValueError):
                size = None
            self.sizes.put(image_id, size)
        return size

    async def results(self, hits: list) -> list[dict]:
        """The hits as ``Result`` dicts with their images' sizes (read from the headers once, on a
        preparation thread; once all are known, no thread hop)."""
        paths = [Path(str(h.path)) if getattr(h, "path", None) else None for h in hits]
        sizes = [self.sizes.get(h.image_id) if p else None for h, p in zip(hits, paths)]
        if any(s is UNKNOWN for s in sizes):
            sizes = await self.decode(lambda: [self.size_of(h.image_id, p) for h, p in zip(hits, paths)])
        return [responses.hit_json(h, s) for h, s in zip(hits, sizes)]


def parse_image_id(raw: str, field: str = "image_id") -> int:
    """A gallery image id: decimal digits only, so ``../../etc/passwd`` never reaches the file system."""
    raw = raw.strip()
    if not _ID.fullmatch(raw):
        shown = raw if len(raw) <= 40 else raw[:40] + "..."
        raise HTTPException(422, f"{field} must be a non-negative integer id from the index, got {shown!r}")
    return int(raw)


def _parse_int(raw: str | None, field: str, lo: int, hi: int, default: int | None) -> int | None:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise HTTPException(422, f"{field} must be an integer, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise HTTPException(422, f"{field} must be between {lo} and {hi}, got {value}")
    return value


def _runtime_name(extractor: Any) -> str:
    """``"torch"``, ``"onnx fp32"`` or ``"onnx int8"`` (what runs the model)."""
    runtime = str(getattr(extractor, "runtime", "torch"))
    precision = getattr(getattr(extractor, "model", None), "precision", None) if runtime == "onnx" else None
    return f"{runtime} {precision}" if precision else runtime


def _one_line(message: Any) -> str:
    return " ".join(str(message).split()) or "error"


def _install_error_handlers(app: FastAPI) -> None:
    def error(status: int, message: Any, headers: dict | None = None) -> JSONResponse:
        return JSONResponse({"error": _one_line(message)}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        msg = first.get("msg", "invalid request")
        return error(422, f"{'.'.join(loc)}: {msg}" if loc else msg)

    @app.exception_handler(BadImage)
    async def bad_image(_: Request, exc: BadImage) -> JSONResponse:
        return error(exc.status, exc)

    @app.exception_handler(PganError)
    async def server_state(_: Request, exc: PganError) -> JSONResponse:
        # Bad input is refused before it reaches the index or the model (BadImage, HTTPException); what is
        # left is the server's own state (an index that cannot answer, a model without a part source).
        return error(503, exc)

    @app.exception_handler(ServerBusy)
    async def busy(_: Request, exc: ServerBusy) -> JSONResponse:
        return error(503, exc, {"Retry-After": "1"})

    @app.exception_handler(WorkerStopped)
    async def stopped(_: Request, exc: WorkerStopped) -> JSONResponse:
        return error(503, exc)

    @app.exception_handler(Exception)
    async def bug(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return error(500, f"internal error ({type(exc).__name__}); see the server log")


def create_app(index: Any, extractor: Any, settings: ServeSettings | None = None) -> FastAPI:
    """The search service over an open gallery ``index`` and a loaded ``extractor`` (see module doc)."""
    settings = settings or ServeSettings()
    state = _State(index, extractor, settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        state.pipeline.start()
        watcher = None
        if settings.reload_seconds > 0 and hasattr(index, "refresh"):
            index.auto_refresh = False  # the watcher loads new snapshots; searches never wait for one
            state.stop_reload.clear()
            watcher = threading.Thread(target=state.watch_index, name="pgan-index-reload", daemon=True)
            watcher.start()
        if settings.warmup:
            try:
                await state.pipeline.embed_image(Image.new("RGB", (64, 64), (128, 128, 128)))
            except Exception as exc:  # a warm-up failure is logged; real queries report their own errors
                log.warning("warm-up query failed: %s", exc)
        yield
        state.stop_reload.set()
        if watcher is not None:
            watcher.join(10)
        state.pipeline.stop()

    app = FastAPI(title="pgan search", version=__version__, lifespan=lifespan,
                  description="Find a vehicle's other sightings in an indexed gallery (PGAN embeddings).")
    app.state.pgan = state
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + 64 * 1024)  # + form overhead
    if settings.allowed_hosts:  # a page elsewhere cannot reach a loopback server through DNS rebinding
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts), www_redirect=False)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so every response carries the headers
    bearer = HTTPBearer(auto_error=False, description="the token given to `pgan serve --token`")

    def require_token(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        if settings.token is None:
            return
        given = cred.credentials.encode() if cred and cred.scheme.lower() == "bearer" else b""
        if not hmac.compare_digest(given, settings.token.encode()):
            raise HTTPException(401, "missing or wrong bearer token (Authorization: Bearer <token>)",
                                headers={"WWW-Authenticate": "Bearer"})

    async def admit() -> AsyncIterator[None]:
        """A bounded queue in front of the work: past ``max_queue`` requests in progress, 503 at once."""
        if state.active >= settings.max_queue:
            state.refused += 1
            raise ServerBusy(f"the server is busy ({settings.max_queue} requests in progress); retry shortly")
        state.active += 1
        try:
            yield
        finally:
            state.active -= 1

    api = APIRouter(prefix="/api", dependencies=[Depends(require_token)], responses=_ERRORS)

    @api.get("/health", response_model=Health, responses={503: {"model": Health}})
    async def health() -> Any:
        if not state.worker.alive:
            body = Health(status="inference thread stopped", gallery_size=0, worker_alive=False)
            return JSONResponse(body.model_dump(), status_code=503)
        size = await state.lookup(state.gallery_size)
        return Health(status="ok", gallery_size=size, worker_alive=True)

    @api.get("/info", response_model=Info)
    async def info() -> Info:
        meta, size = await state.lookup(lambda: (index.info(), state.gallery_size()))
        note = getattr(extractor, "parts_note", None)
        return Info(model_fingerprint=str(meta.get("model_fingerprint", "")),
                    checkpoint=Path(str(meta.get("checkpoint", ""))).name,
                    embedding_dim=int(getattr(extractor, "embedding_dim", meta.get("dim", 0))),
                    gallery_size=size, index_type=str(meta.get("index_type", "")),
                    upload_parts=str(getattr(extractor, "new_photo_parts", None) or "none"),
                    upload_parts_fallback=note is not None, warnings=[note] if note else [],
                    runtime=_runtime_name(extractor),
                    limits={"max_upload_bytes": settings.max_upload_bytes, "max_pixels": settings.max_pixels,
                            "max_topk": settings.max_topk, "default_topk": settings.default_topk,
                            "max_thumbnail": settings.max_thumbnail},
                    inference={"batches": state.worker.batches, "images": state.worker.images,
                               "in_progress": state.active, "refused": state.refused,
                               "max_queue": settings.max_queue, "thumbnail_hits": state.thumbs.hits,
                               "thumbnail_misses": state.thumbs.misses})

    @api.post("/search", response_model=SearchResponse, dependencies=[Depends(admit)])
    async def search(request: Request,
                     image: UploadFile | None = File(None, description="the query photo (JPEG, PNG, ...)"),
                     image_id: str | None = Form(None, description="or: search with this gallery image"),
                     topk: str | None = Form(None, description="number of results"),
                     camera: str | None = Form(None, description="only results from this camera id"),
                     exclude_camera: str | None = Form(None, description="no results from this camera id"),
                     vehicle_id: str | None = Form(None, description="only results of this vehicle id"),
                     since: str | None = Form(None, description="only results at or after this time (the "
                                              "gallery's digits, e.g. 00030000, or ISO 8601)"),
                     until: str | None = Form(None, description="only results at or before this time"),
                     group: str | None = Form(None, description="'camera': also answer 'sightings', the "
                                              "results above min_score grouped by camera in time order"),
                     min_score: str | None = Form(None, description="with group=camera: the least score of a "
                                                  f"sighting (cosine, -1..1; default {DEFAULT_MIN_SCORE})")
                     ) -> Response:
        start = time.perf_counter()
        k = _parse_int(topk, "topk", 1, settings.max_topk, settings.default_topk)
        await queries.refuse_unknown_fields(request, queries.SEARCH_FIELDS)
        where = queries.parse_filters(camera, exclude_camera, vehicle_id, since, until)
        least = parse_group(group, min_score)
        if image is not None and image_id not in (None, ""):
            raise HTTPException(422, "give either an upload in 'image' or a gallery 'image_id', not both")
        if image is not None:
            data = await image.read(settings.max_upload_bytes + 1)
            emb, (width, height) = await state.pipeline.embed_upload(data)
            vector, boxes, query_id = emb.embedding, emb.boxes, None
        elif image_id not in (None, ""):
            query_id = parse_image_id(image_id)
            path = await state.gallery_path(query_id)
            # The stored vector and boxes: the gallery image's own embedding, never a re-embedding.
            vector, item = await state.lookup(lambda: (index.vector(query_id), index.get(query_id)))
            boxes = list(getattr(item, "boxes", None) or [])
            try:
                width, height = await state.decode(uploads.image_size, path)
            except (OSError, ValueError):
                raise HTTPException(404, f"image id {query_id}: its file is not a readable image") from None
        else:
            raise HTTPException(422, "missing field 'image' (the query photo) or 'image_id' (a gallery image)")
        results = await state.results(await state.lookup(state.search, vector, k, where))
        # Plain dicts encoded once (the response_model documents them; a Response skips its validation).
        return responses.json_response(responses.search_body(
            responses.query_json(query_id, width, height, boxes), results,
            round(1000 * (time.perf_counter() - start), 2),
            None if least is None else sightings_view(results, least)))

    queries.register(api, state, settings, admit)

    @api.get("/images/{image_id}", response_class=Response, dependencies=[Depends(admit)],
             responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}})
    async def gallery_image(image_id: str, size: str | None = None) -> Response:
        gid = parse_image_id(image_id)
        px = _parse_int(size, "size", 16, settings.max_thumbnail, None)
        path = await state.gallery_path(gid)
        headers = {"Cache-Control": "private, max-age=3600"}
        if px is None:  # typed from the decoded header, never from the file's name
            media_type = await state.decode(uploads.image_media_type, path)
            if media_type is None:
                raise HTTPException(404, f"image id {gid}: its file is not a readable image")
            return FileResponse(path, media_type=media_type, headers=headers)
        jpeg = await state.decode(state.thumbnail, gid, path, settings.thumbnail_side(px))
        return Response(jpeg, media_type="image/jpeg", headers=headers)

    app.include_router(api)
    app.mount("/static", StaticFiles(packages=[("pgan.serve", "static")]), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(resources.files("pgan.serve").joinpath("static/index.html").read_text("utf-8"),
                            headers={"Content-Security-Policy": PAGE_CSP})

    return app
