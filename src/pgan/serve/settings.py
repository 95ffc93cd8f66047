"""The service's limits and options, one frozen dataclass validated at construction."""

from __future__ import annotations

from dataclasses import dataclass

from pgan.errors import PganError


@dataclass(frozen=True)
class ServeSettings:
    """Limits of ``pgan serve``; every request is checked against them before any decoding.

    Example::

        settings = ServeSettings(max_upload_bytes=5 * 2**20, max_topk=50, token="s3cret")
    """

    max_upload_bytes: int = 10 * 2**20  # one uploaded photo, bytes
    max_pixels: int = 25_000_000  # width x height, read from the header before decoding
    max_topk: int = 100
    default_topk: int = 10
    max_thumbnail: int = 1024  # largest ?size= for /api/images/{id}
    thumbnail_sizes: tuple[int, ...] = (64, 128, 256, 512, 1024)  # ?size=N is served at the next of these
    thumbnail_cache_bytes: int = 32 * 2**20  # JPEG bytes of thumbnails kept (least recently used dropped)
    max_batch: int = 8  # queued queries embedded together by the inference thread
    batch_wait_ms: float = 4.0  # how long the inference thread waits for more uploads to batch (0: none)
    max_queue: int = 64  # searches and image requests in progress at once (running or waiting); beyond: 503
    allowed_hosts: tuple[str, ...] = ()  # Host header names accepted (TrustedHostMiddleware); () accepts any
    reload_seconds: float = 1.0  # how often the index is checked for a newer snapshot (0: never)
    token: str | None = None  # when set, every /api/ call needs "Authorization: Bearer <token>"
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP")  # decoders PIL may use for uploads
    warmup: bool = True  # embed one blank image at start-up so the first query is not slow
    prep_threads: int = 2  # threads decoding uploads and finding their part boxes (off the inference thread)
    decode_side: int = 512  # JPEG uploads decode reduced while both sides stay >= this (0: full size)

    def thumbnail_side(self, requested: int) -> int:
        """The fixed size a ``?size=requested`` thumbnail is served at: the smallest of ``thumbnail_sizes``
        not below it (the largest if none), at most ``max_thumbnail``."""
        sizes = sorted(self.thumbnail_sizes)
        return min(next((s for s in sizes if s >= requested), sizes[-1]), self.max_thumbnail)

    def __post_init__(self) -> None:
        for key in ("max_upload_bytes", "max_pixels", "max_topk", "default_topk", "max_thumbnail", "max_batch",
                    "max_queue", "prep_threads", "thumbnail_cache_bytes"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PganError(f"serve setting {key}={value!r} must be a positive integer")
        if self.default_topk > self.max_topk:
            raise PganError(f"serve setting default_topk={self.default_topk} exceeds max_topk={self.max_topk}")
        if self.token is not None and (not self.token or any(c.isspace() for c in self.token)):
            raise PganError("serve setting token must be a non-empty string without spaces")
        if isinstance(self.batch_wait_ms, bool) or not isinstance(self.batch_wait_ms, (int, float)) \
                or not 0 <= self.batch_wait_ms <= 1000:
            raise PganError(f"serve setting batch_wait_ms={self.batch_wait_ms!r} must be between 0 and 1000")
        if self.reload_seconds < 0:
            raise PganError(f"serve setting reload_seconds={self.reload_seconds!r} must be >= 0")
        if isinstance(self.decode_side, bool) or not isinstance(self.decode_side, int) or self.decode_side < 0:
            raise PganError(f"serve setting decode_side={self.decode_side!r} must be an integer >= 0")
        if not self.thumbnail_sizes or any(isinstance(v, bool) or not isinstance(v, int) or v < 16
                                           for v in self.thumbnail_sizes):
            raise PganError(f"serve setting thumbnail_sizes={self.thumbnail_sizes!r} must be integers >= 16")
        if not self.formats:
            raise PganError("serve setting formats must name at least one image format")
