"""Gallery thumbnails: JPEG bytes per (image id, fixed size), kept in a bounded LRU; and the gallery
images' pixel sizes the answers carry, kept in a bounded cache (:class:`ImageSizes`).

``GET /api/images/{id}?size=N`` is served at one of a few fixed sizes
(:meth:`ServeSettings.thumbnail_side`), so the page's requests and a client's arbitrary ``N``
share cache entries instead of each making its own. The cache holds at most ``max_bytes`` of
JPEG data; the least recently used entries are dropped first. It is shared by the threads that
make thumbnails, so every access takes a lock (held for dictionary operations only, never
while a thumbnail is made).

Example::

    cache = ThumbnailCache(32 * 2**20)
    jpeg = cache.get((42, 256))
    if jpeg is None:
        jpeg = cache.put((42, 256), thumbnail_jpeg(image, 256))
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["ImageSizes", "ThumbnailCache", "UNKNOWN"]

UNKNOWN = object()  # ImageSizes.get: not cached (None is a cached answer: the file could not be read)


class ThumbnailCache:
    """A thread-safe LRU of JPEG bytes keyed by ``(image_id, side)``, bounded by their total size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """JPEG bytes held now."""
        return self._bytes

    def get(self, key: tuple[int, int]) -> bytes | None:
        """The cached bytes (now the most recently used), or None."""
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def put(self, key: tuple[int, int], data: bytes) -> bytes:
        """Keep ``data`` (unless it alone exceeds the budget), dropping the least recently used; returns it."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= len(old)
            if len(data) <= self.max_bytes:
                self._items[key] = data
                self._bytes += len(data)
            while self._bytes > self.max_bytes:
                _, dropped = self._items.popitem(last=False)
                self._bytes -= len(dropped)
        return data


class ImageSizes:
    """``(width, height)`` of gallery images by id, read from their headers once and kept for the next
    answers that return them; at most ``max_items`` (about 100 bytes each), the oldest dropped first, so
    a long-running service over a large gallery does not grow without bound. ``get`` takes no lock (one
    dictionary look-up); writers do."""

    def __init__(self, max_items: int = 100_000) -> None:
        self.max_items = max_items
        self._items: dict[int, tuple[int, int] | None] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, image_id: int) -> tuple[int, int] | None | object:
        """The cached size, None when the file could not be read, or :data:`UNKNOWN`."""
        return self._items.get(image_id, UNKNOWN)

    def put(self, image_id: int, size: tuple[int, int] | None) -> tuple[int, int] | None:
        with self._lock:
            self._items[image_id] = size
            while len(self._items) > self.max_items:
                del self._items[next(iter(self._items))]
        return size
