"""Where a request's work runs: a thread pool prepares queries, one thread runs the model, one the index.

The event loop only parses requests and waits. For an uploaded photo:

1. a ``pgan-prep`` thread (``settings.prep_threads`` of them) decodes it, a JPEG reduced at
   decoding time (:func:`pgan.serve.uploads.decode_upload_reduced`), finds its part boxes
   and resizes and normalises it (``FeatureExtractor.prepare``); with ``parts="model"`` (a
   model with a part box head) it finds no boxes: there is no proposals step;
2. the ``pgan-inference`` thread (:class:`~pgan.serve.worker.InferenceWorker`) stacks whatever
   prepared queries are waiting into one batch and runs the network on it, nothing else (with
   ``parts="model"`` that one call also returns each photo's part boxes);
3. the ``pgan-index`` thread runs the faiss search and the SQLite look-ups. The gallery index
   holds one SQLite connection, so one thread owns it; a search is a millisecond or so, far
   below the model's cost, and faiss parallelises a large search itself.

So decoding and part proposals of the next queries overlap the network's work on this batch,
and the inference thread never waits on a decoder or on the database.

Example::

    pipeline = Pipeline(extractor, ServeSettings())
    pipeline.start()
    embedded, (width, height) = await pipeline.embed_upload(jpeg_bytes)
    hits = await pipeline.lookup(index.search, embedded.embedding[None], 10)
    pipeline.stop()
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from pgan.serve.settings import ServeSettings
from pgan.serve.uploads import decode_upload_reduced
from pgan.serve.worker import Embedded, InferenceWorker, Prepared

__all__ = ["Pipeline", "scale_boxes"]


def scale_boxes(boxes: list, sx: float, sy: float) -> list:
    """Part boxes of a reduced image in the full image's pixels (boxes without coordinates kept as they are)."""
    if sx == 1.0 and sy == 1.0:
        return list(boxes)
    out = []
    for b in boxes:
        if dataclasses.is_dataclass(b):
            out.append(dataclasses.replace(b, x1=b.x1 * sx, y1=b.y1 * sy, x2=b.x2 * sx, y2=b.y2 * sy))
        else:
            out.append(b)
    return out


class Pipeline:
    """The service's threads (see the module doc): ``prep`` (a pool), the inference worker, ``lookup``."""

    def __init__(self, extractor: Any, settings: ServeSettings) -> None:
        self.extractor, self.settings = extractor, settings
        self.worker = InferenceWorker(extractor, settings.max_batch, settings.batch_wait_ms)
        # A FeatureExtractor prepares inputs off the inference thread; a duck-typed extractor (the API
        # tests' fakes) only has extract_with_parts, which then runs whole on the inference thread.
        self.splits = hasattr(extractor, "prepare") and hasattr(extractor, "embed_prepared")
        self._prep: ThreadPoolExecutor | None = None
        self._index: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        for pool in (self._prep, self._index):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        self._prep = self._index = None

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._prep is None or self._index is None:  # made on first use: a restarted app gets new ones
            self._prep = ThreadPoolExecutor(self.settings.prep_threads, thread_name_prefix="pgan-prep")
            self._index = ThreadPoolExecutor(1, thread_name_prefix="pgan-index")
        return self._prep, self._index

    async def prep(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a preparation thread (decoding, image headers, thumbnails)."""
        return await asyncio.wrap_future(self._pools()[0].submit(fn, *args))

    async def lookup(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the index thread (faiss search, SQLite look-ups)."""
        return await asyncio.wrap_future(self._pools()[1].submit(fn, *args))

    def prepare(self, image: Image.Image) -> Prepared:
        """Network inputs and part boxes of one decoded image (runs on a preparation thread)."""
        x, masks, boxes = self.extractor.prepare([image])
        return Prepared(x, masks, list(boxes[0]), (image.width, image.height))

    def _decode_and_prepare(self, data: bytes) -> tuple[Prepared | Image.Image, tuple[int, int], Image.Image]:
        image, full = decode_upload_reduced(data, self.settings, "image", self.settings.decode_side)
        return (self.prepare(image) if self.splits else image), full, image

    async def embed_upload(self, data: bytes) -> tuple[Embedded, tuple[int, int]]:
        """An uploaded photo's embedding and part boxes (full-size pixels) and its full ``(width, height)``;
        :class:`~pgan.serve.uploads.BadImage` for a photo that cannot be decoded."""
        ready, full, image = await self.prep(self._decode_and_prepare, data)
        if isinstance(ready, Prepared):
            embedded = await self.worker.embed_prepared(ready)
        else:
            embedded = await self.worker.embed(ready)
        sx, sy = full[0] / image.width, full[1] / image.height
        return Embedded(embedded.embedding, scale_boxes(embedded.boxes, sx, sy)), full

    async def embed_image(self, image: Image.Image) -> Embedded:
        """The embedding of an already decoded image (the start-up warm-up)."""
        if not self.splits:
            return await self.worker.embed(image)
        return await self.worker.embed_prepared(await self.prep(self.prepare, image))
