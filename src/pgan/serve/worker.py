"""The inference thread: one thread owns the model, queued queries are embedded in small batches.

Requests never run the network on the event loop, and never run it concurrently
with each other (which would oversubscribe the CPU's cores with several
intra-op thread pools). Whatever is queued when the thread becomes free is
embedded as one batch of at most ``max_batch`` images, so under load the
per-image cost drops instead of requests piling up behind each other. After the first embedding
job of a batch the thread waits up to ``batch_wait_ms`` for more (bounded wait, bounded batch):
uploads prepared by the thread pool arrive a few milliseconds apart, and without the wait a fast
model (onnxruntime) takes each alone. ``batch_wait_ms=0`` only drains what is already queued.

The thread runs the network only: queries arrive :class:`Prepared` (decoded, part boxes found,
resized and normalised by :mod:`pgan.serve.pipeline`'s thread pool), and a batch is their arrays
stacked. An extractor without ``prepare``/``embed_prepared`` (the API tests' fakes) gets PIL
images and does everything here through ``extract_with_parts``. :meth:`InferenceWorker.run`
still runs any call on this thread; the service itself does its index look-ups elsewhere.

A call after the thread has died raises :class:`WorkerStopped` (the service answers 503). The
queue itself is unbounded: the app admits a bounded number of requests at once (``max_queue``),
and each has at most one job queued here.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


class WorkerStopped(RuntimeError):
    """The inference thread is not running (HTTP 503)."""


@dataclass
class Embedded:
    """One query's embedding ``(d,)`` and the part boxes the model used (original pixels)."""

    embedding: np.ndarray
    boxes: list = field(default_factory=list)


@dataclass
class Prepared:
    """One query ready for the network: ``(1, 3, H, W)`` images and ``(1, D, h, w)`` masks (or None), as
    ``FeatureExtractor.prepare`` makes them, and its part boxes (original pixels). ``size``: the image's
    ``(width, height)``, what the boxes of a network that finds its own parts (``parts="model"``) are
    scaled to; those replace ``boxes``."""

    images: np.ndarray
    masks: np.ndarray | None
    boxes: list = field(default_factory=list)
    size: tuple[int, int] | None = None


@dataclass
class _Job:
    future: Future
    image: Image.Image | None = None  # an embedding job (the extractor prepares it here)
    prepared: Prepared | None = None  # or one prepared elsewhere
    call: Callable[[], Any] | None = None  # or any other call that must run on the model's thread


class InferenceWorker:
    """Serialises and batches calls to ``extractor`` (and to the index) on one daemon thread.

    Example::

        worker = InferenceWorker(extractor, max_batch=8)
        worker.start()
        emb = await worker.embed(pil_image)           # from a coroutine
        hits = await worker.run(index.search, emb.embedding[None], 10)
        worker.stop()
    """

    def __init__(self, extractor: Any, max_batch: int = 8, batch_wait_ms: float = 0.0) -> None:
        self.extractor = extractor
        self.max_batch = max_batch
        self.batch_wait_s = max(0.0, batch_wait_ms) / 1000.0
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0  # statistics, read by /api/info
        self.images = 0

    @property
    def alive(self) -> bool:
        """True while the inference thread runs (``/api/health`` reports it)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="pgan-inference", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _put(self, job: _Job) -> Future:
        if not self.alive:
            raise WorkerStopped("the inference thread is not running; see the server log")
        self._queue.put(job)
        return job.future

    def submit_embed(self, image: Image.Image) -> Future:
        return self._put(_Job(Future(), image=image))

    def submit_prepared(self, prepared: Prepared) -> Future:
        return self._put(_Job(Future(), prepared=prepared))

    def submit_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        return self._put(_Job(Future(), call=lambda: fn(*args, **kwargs)))

    async def embed(self, image: Image.Image) -> Embedded:
        return await asyncio.wrap_future(self.submit_embed(image))

    async def embed_prepared(self, prepared: Prepared) -> Embedded:
        return await asyncio.wrap_future(self.submit_prepared(prepared))

    async def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.wrap_future(self.submit_call(fn, *args, **kwargs))

    # --- the thread ---
    def _loop(self) -> None:
        stop = False
        while not stop:
            job = self._queue.get()
            if job is None:
                break
            jobs = [job]
            # An embedding job waits up to batch_wait_s for company; any other call only takes what is queued.
            wait = self.batch_wait_s if job.call is None else 0.0
            deadline = time.monotonic() + wait
            while len(jobs) < self.max_batch:
                left = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
            embeds = [j for j in jobs if j.image is not None]
            if embeds:
                self._embed_batch(embeds)
            ready = [j for j in jobs if j.prepared is not None]
            if ready:
                self._embed_prepared(ready)
            for j in jobs:
                if j.call is not None and j.future.set_running_or_notify_cancel():
                    try:
                        j.future.set_result(j.call())
                    except Exception as exc:  # handed to the awaiting request
                        j.future.set_exception(exc)

    def _embed_batch(self, jobs: list[_Job]) -> None:
        self._settle(jobs, self._extract)

    def _embed_prepared(self, jobs: list[_Job]) -> None:
        self._settle(jobs, lambda js: self._network([j.prepared for j in js]))

    def _extract(self, jobs: list[_Job]) -> list[Embedded]:
        feats, boxes = self.extractor.extract_with_parts([j.image for j in jobs])
        self.batches += 1
        self.images += len(jobs)
        return [Embedded(np.asarray(feats[i], dtype=np.float32), list(boxes[i])) for i in range(len(jobs))]

    def _settle(self, jobs: list[_Job], run: Callable[[list[_Job]], list[Embedded]]) -> None:
        """Run ``run`` on the jobs still wanted as one batch and hand each its result; if the batch fails,
        one bad input must not fail the others: each is run on its own and gets its result or its error."""
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        if not jobs:
            return
        try:
            results = run(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                jobs[0].future.set_exception(exc)
                return
            log.warning("a batch of %d images failed (%s); embedding them one by one", len(jobs), exc)
            for j in jobs:
                try:
                    j.future.set_result(run([j])[0])
                except Exception as one:  # handed to the awaiting request
                    j.future.set_exception(one)
            return
        for j, r in zip(jobs, results):
            j.future.set_result(r)

    def _network(self, items: list[Prepared]) -> list[Embedded]:
        """One network call for the batch; the network's own part boxes (``parts="model"``: no proposals
        were made while preparing) replace the prepared ones."""
        x = items[0].images if len(items) == 1 else np.concatenate([p.images for p in items])
        masks = None
        if items[0].masks is not None:
            masks = items[0].masks if len(items) == 1 else np.concatenate([p.masks for p in items])
        own = None
        sizes = [p.size for p in items]
        if hasattr(self.extractor, "embed_prepared_parts") and all(s is not None for s in sizes):
            feats, own = self.extractor.embed_prepared_parts(x, masks, sizes)
        else:
            feats = self.extractor.embed_prepared(x, masks)
        feats = np.asarray(feats, dtype=np.float32)
        self.batches += 1
        self.images += len(items)
        return [Embedded(f, list(own[i]) if own is not None else list(p.boxes))
                for i, (f, p) in enumerate(zip(feats, items))]
